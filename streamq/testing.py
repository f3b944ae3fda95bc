"""Real processes for tests and local runs: free ports, a Redis server (plain, a Redis Cluster or a
Sentinel setup), streamq services started as ``python -m ...`` the way users run them, and a whole
stack of them on free ports. Never a mock: every helper starts the real program.

    from streamq.testing import RedisServer, Stack

    redis = RedisServer()  # a private redis-server on a free loopback port, in a temp dir
    stack = Stack(redis, log_dir).start("api", "worker")
    try:
        task = stack.submit(type="echo", payload=1)
    finally:
        stack.close()
        redis.stop()

Needs ``redis-server`` (and ``redis-cli`` for a cluster) on the PATH and streamq's ``server`` extra for
the services. It does not import pytest: wrap these in fixtures of your own."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any

import httpx

# no persistence, nothing evicted (streamq refuses writes instead: README, Operations)
EPHEMERAL = ("--save", "", "--appendonly", "no")
BASE = ("--bind", "127.0.0.1", "--maxmemory-policy", "noeviction")

# the services ``Stack.start`` knows, by name
MODULES = {
    "api": "streamq.services.api",
    "worker": "streamq.services.worker",
    "scheduler": "streamq.services.scheduler",
    "notifier": "streamq.services.notifier",
    "dashboard": "streamq.dashboard",
}

# a browser for the dashboard: Debian's chromium (apt-get install chromium), driven by Playwright
# without its browser download, headless and with nothing reaching outside loopback
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Ports for servers are picked below the OS's ephemeral range, where the kernel takes ports for
# outgoing connections and for ``bind(0)`` (a service's metrics port 0, say): a port picked there could
# be taken by one of those between the pick and the bind. Each pick is reserved by a marker file, so
# parallel test processes (pytest-xdist, the cluster pass beside the standalone one) never share one.
PORTS_FROM = 15000
RESERVED = Path(tempfile.gettempdir()) / "streamq-ports"
RESERVATION_S = 3600.0  # a marker older than this is stale: its port may be picked again


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _reserved(port: int) -> bool:
    """Reserve ``port`` for this process (False when another process holds a fresh reservation)."""
    marker = RESERVED / str(port)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        try:
            stale = time.time() - marker.stat().st_mtime > RESERVATION_S
        except FileNotFoundError:
            return False
        if stale:
            marker.unlink(missing_ok=True)
        return False


def _pick(span: int, fits: Callable[[int], bool]) -> int:
    """A reserved, bindable port in [PORTS_FROM, ephemeral low - ``span``) for which ``fits`` holds;
    the OS's choice where that range is too small."""
    high = _ephemeral_low() - span
    if high - PORTS_FROM < 1000:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port + span <= 65535 and fits(port):
                return port
    RESERVED.mkdir(exist_ok=True)
    rng = random.Random()  # seeded by the OS: unrelated to any seed a test sets
    for _ in range(100_000):
        port = rng.randrange(PORTS_FROM, high)
        if _reserved(port) and _bindable(port) and fits(port):
            return port
    raise RuntimeError(f"no free port between {PORTS_FROM} and {high}")


def free_port() -> int:
    """A loopback port nothing listens on now, reserved for this process."""
    return _pick(0, lambda _port: True)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and reserved too."""
    return _pick(10000, lambda port: _reserved(port + 10000) and _bindable(port + 10000))


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Until something accepts connections on the loopback ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def redis_answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a Redis server at ``host:port`` answers a PING (one that wants a password counts; one
    still loading its data does not)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers (below 500); a process starting on a loaded 2-core machine can take 15 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition", every: float = 0.05) -> Any:
    """Call ``check`` until it returns something true and return that; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(every)


def _redis_server(args: list[str], folder: Path, new_session: bool = False) -> subprocess.Popen[bytes]:
    if shutil.which("redis-server") is None:
        raise FileNotFoundError(
            "redis-server is missing: python3 deploy/ensure_deps.py --install (Debian: redis-server)"
        )
    return subprocess.Popen(
        ["redis-server", *args, "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=new_session,
    )


class RedisServer:
    """A real redis-server on a loopback port (a free one unless ``port`` is given).

    By default in a temp dir (removed by :meth:`close`), with no persistence and ``noeviction``;
    ``extra`` arguments come last (``--requirepass``, ``--appendonly yes``, ...; the last of a
    setting wins). ``data_dir`` keeps its data where given; ``persistent`` leaves Redis's own save
    defaults on; ``new_session`` keeps a terminal's Ctrl-C from reaching it."""

    def __init__(
        self,
        *extra: str,
        port: int | None = None,
        data_dir: Path | None = None,
        persistent: bool = False,
        new_session: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.dir = str(data_dir) if data_dir is not None else tempfile.mkdtemp(prefix="streamq-redis-")
        self.args = ["--port", str(self.port), *BASE, *([] if persistent else EPHEMERAL), *extra]
        self.new_session = new_session
        self.timeout = timeout
        self.proc = self._start()

    def _start(self, *extra: str) -> subprocess.Popen[bytes]:
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        proc = _redis_server([*self.args, *extra], Path(self.dir), self.new_session)
        deadline = time.monotonic() + self.timeout
        while not redis_answers(self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"redis-server on port {self.port} did not answer within {self.timeout} s")
            time.sleep(0.02)
        return proc

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self, *extra: str) -> None:
        """Start the stopped server again: same port, directory and arguments (and ``extra``). Without
        persistence it comes back empty; with an append-only file it reloads it."""
        self.proc = self._start(*extra)

    def stop(self) -> None:
        """SIGTERM, and wait for it to exit (a stopped server may be :meth:`restart`-ed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        """:meth:`stop`, and remove the temp dir this created."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _poll(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


class ClusterServers:
    """A real Redis Cluster: ``masters`` cluster-enabled redis-servers joined by ``redis-cli --cluster
    create``, each with ``replicas`` replicas (none by default), on free ports in a temp dir;
    ``node_timeout_ms``: how soon a dead master's replica is promoted. Every process killed by
    :meth:`stop`. ``url`` is a ``redis+cluster://`` URL."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 15000) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="streamq-cluster-"))
        self.ports: list[int] = []
        while len(self.ports) < masters * (1 + replicas):
            port = cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.args: dict[int, list[str]] = {}
        try:
            for port in self.ports:
                folder = self.dir / str(port)
                folder.mkdir()
                cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                cluster += ["--cluster-node-timeout", str(node_timeout_ms)]
                self.args[port] = ["--port", str(port), *BASE, *EPHEMERAL, *cluster]
                self.procs[port] = _redis_server(self.args[port], folder)
            for port in self.ports:
                wait_port(port)
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )  # fmt: skip
            for port in self.ports:
                _poll(lambda port=port: self._ok(port), f"cluster_state:ok on {port}")  # type: ignore[misc]
            if replicas:
                _poll(lambda: self._replicas_synced(masters * replicas), "every replica in sync")
        except BaseException:
            self.stop()
            raise

    def _replicas_synced(self, count: int) -> bool:
        import redis

        synced = 0
        for port in self.ports:
            with redis.Redis(port=port, decode_responses=True) as client:
                info = client.info("replication")
                synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
        return synced == count

    def master_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot now."""
        import redis

        with redis.Redis(port=self.alive()[0], decode_responses=True) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise LookupError(f"no master serves slot of {key}")

    def alive(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown, no last replication)."""
        self.procs[port].kill()
        self.procs[port].wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed node again from its nodes.conf, empty (no persistence): a master whose slots
        a replica took over comes back as that replica's replica."""
        self.procs[port] = _redis_server(self.args[port], self.dir / str(port))
        wait_port(port)

    @staticmethod
    def _ok(port: int) -> bool:
        import redis

        with redis.Redis(port=port, decode_responses=True) as client:
            info = client.execute_command("CLUSTER", "INFO")
            return "cluster_state:ok" in str(info)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def stop(self) -> None:
        _kill_all(self.procs.values(), self.dir)

    close = stop


def _kill_all(procs: Collection[subprocess.Popen[bytes]], folder: Path) -> None:
    """Kill every server still running, wait for each, and remove their temp dir."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


class SentinelServers:
    """A master, one replica and three sentinels (quorum 2) that fail over within a few seconds, on free
    ports in a temp dir. ``url`` is a ``redis+sentinel://`` URL.

    ``password``: the data servers' ``requirepass`` and ``masterauth`` (the sentinels get it as
    ``auth-pass``); ``sentinel_password``: the sentinels' own ``requirepass``."""

    MASTER = "streamq"

    def __init__(
        self,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str = "",
        sentinel_password: str = "",
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="streamq-sentinel-"))
        self.password, self.sentinel_password = password, sentinel_password
        self.auth: dict[str, str] = {"password": password} if password else {}
        self.server_auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.sentinel_auth: dict[str, str] = {"password": sentinel_password} if sentinel_password else {}
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        try:
            self._data(self.master_port, [])
            self._data(self.replica_port, ["--replicaof", "127.0.0.1", str(self.master_port)])
            _poll(self._replica_synced, "replica in sync")
            for port in self.sentinel_ports:
                self._sentinel(port, down_after_ms, failover_timeout_ms)
            _poll(self._sentinels_see_replica, "sentinels know the replica and each other")
        except BaseException:
            self.stop()
            raise

    def _data(self, port: int, extra: list[str]) -> None:
        folder = self.dir / str(port)
        folder.mkdir()
        self.procs[port] = _redis_server(["--port", str(port), *BASE, *EPHEMERAL, *self.server_auth, *extra], folder)
        wait_port(port)

    def _sentinel(self, port: int, down_after_ms: int, failover_timeout_ms: int) -> None:
        folder = self.dir / str(port)
        folder.mkdir()
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}\n"
            f"sentinel failover-timeout {self.MASTER} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.MASTER} 1\n"
            + (f"sentinel auth-pass {self.MASTER} {self.password}\n" if self.password else "")
            + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
        )
        self.procs[port] = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(port)

    def _replica_synced(self) -> bool:
        import redis

        with redis.Redis(port=self.replica_port, decode_responses=True, **self.auth) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_see_replica(self) -> bool:
        import redis

        for port in self.sentinel_ports:
            with redis.Redis(port=port, decode_responses=True, **self.sentinel_auth) as client:
                master = client.execute_command("SENTINEL", "MASTER", self.MASTER)
                fields = dict(zip(master[::2], master[1::2], strict=True)) if isinstance(master, list) else master
                if int(fields.get("num-slaves", 0)) < 1 or int(fields.get("num-other-sentinels", 0)) < 2:
                    return False
        return True

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{self.MASTER}"

    def masters_named(self) -> set[int]:
        """The master port each sentinel names (one element once they all agree)."""
        import redis

        ports = set()
        for sentinel in self.sentinel_ports:
            with redis.Redis(port=sentinel, decode_responses=True, **self.sentinel_auth) as client:
                _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
                ports.add(int(port))
        return ports

    def kill(self, port: int) -> None:
        """SIGKILL one data server (no shutdown, no last replication)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(timeout=10)

    def cut_replica(self) -> None:
        """The replica falls behind: SIGSTOP it and drop its link on the master, so whatever the master
        writes from now on reaches no replica (until :meth:`resume`). A lagging or partitioned replica."""
        import redis

        self.procs[self.replica_port].send_signal(signal.SIGSTOP)
        with redis.Redis(port=self.master_port, decode_responses=True, **self.auth) as client:
            client.client_kill_filter(_type="replica")

    def resume(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGCONT)

    def restart(self, port: int) -> None:
        """Start a killed data server again, empty (no persistence): the sentinels make it a replica
        of the current master, as they do with a failed master that comes back."""
        self.procs[port] = _redis_server(
            ["--port", str(port), *BASE, *EPHEMERAL, *self.server_auth], self.dir / str(port)
        )
        wait_port(port)

    def replicas_of(self, port: int) -> int:
        import redis

        with redis.Redis(port=port, decode_responses=True, **self.auth) as client:
            info = client.info("replication")
            return sum(1 for k, v in info.items() if k.startswith("slave") and "online" in str(v))

    def stop(self) -> None:
        _kill_all(self.procs.values(), self.dir)

    close = stop


class Service:
    """A streamq service started as ``python -m <module>`` (or as ``command``: an installed ``streamq``
    command) in ``cwd`` (default: the current directory, which ``-m`` puts on the import path: where
    handler modules are found), with ``env`` over this process's environment and JSON logs unless
    ``env`` says otherwise; its output goes to a log file in ``log_dir``."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        log_dir: Path,
        name: str | None = None,
        *,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.module = module
        self.name = name or module.rsplit(".", 1)[-1]
        self.log_path = log_dir / f"{self.name}-{uuid.uuid4().hex[:8]}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "STREAMQ_LOG_FORMAT": "json", **env}
        argv = command or [sys.executable, "-m", module]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def check(self) -> None:
        """RuntimeError (with the end of its log) if the process has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-2000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux: from /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Stack:
    """streamq's services as real processes on one Redis (anything with a ``url``: a
    :class:`RedisServer`, :class:`ClusterServers`, ...), on a fresh key prefix and free ports; ``env``
    adds settings (``STREAMQ_...``) for every service."""

    def __init__(self, redis: Any, log_dir: Path, **env: str) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.api_port, self.dashboard_port = free_port(), free_port()
        self.env = {
            "STREAMQ_REDIS_URL": redis.url,
            "STREAMQ_KEY_PREFIX": self.prefix,
            "STREAMQ_API_PORT": str(self.api_port),
            "STREAMQ_DASHBOARD_PORT": str(self.dashboard_port),
            "STREAMQ_API_URL": self.api_url,
            "STREAMQ_HEARTBEAT_S": "1",
            "STREAMQ_SHUTDOWN_GRACE_S": "5",
            **env,
        }
        self.log_dir = log_dir
        self.services: dict[str, Service] = {}
        self.http = httpx.Client(timeout=10)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, *names: str) -> Stack:
        """Start the services ``names`` (keys of :data:`MODULES`); returns once the api and the
        dashboard, if started, answer."""
        for name in names:
            self.services[name] = Service(MODULES[name], self.env, self.log_dir, name=name)
        if "api" in names:
            wait_http(f"{self.api_url}/api/health")
        if "dashboard" in names:
            wait_http(f"{self.dashboard_url}/dash/config")
        return self

    def stop(self, *names: str) -> None:
        """Stop the services ``names`` (all by default)."""
        for name in names or tuple(self.services):
            service = self.services.pop(name, None)
            if service is not None:
                service.stop()

    def close(self) -> None:
        self.stop()
        self.http.close()

    def submit(self, **task: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.api_url}/api/tasks", json=task)
        if response.status_code != 201:
            raise AssertionError(f"{response.status_code}: {response.text}")
        return response.json()  # type: ignore[no-any-return]

    def task(self, task_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.api_url}/api/tasks/{task_id}").json()  # type: ignore[no-any-return]

    def services_of(self, kind: str) -> list[dict[str, Any]]:
        return [s for s in self.http.get(f"{self.api_url}/api/services").json() if s["kind"] == kind]
