"""Real multi-process Redis topologies for tests: a 3-master Redis Cluster and a Sentinel setup
(master + replica + 3 sentinels). Free ports, temp dirs, every process killed by ``stop()``.

Both expose ``url`` (what services get as ``STREAMQ_REDIS_URL``) like :class:`tests.support.RedisServer`.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support import free_port, wait_port

BASE = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]


def _start(args: list[str], folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["redis-server", *args, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too (so the port is <= 55535)."""
    while True:
        port = free_port()
        if port <= 55535 and _bindable(port + 10000):
            return port


class ClusterServers:
    """``masters`` cluster-enabled redis-servers joined by ``redis-cli --cluster create``, each with
    ``replicas`` replicas (none by default); ``node_timeout_ms``: how soon a dead master's replica is
    promoted."""

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
                self.args[port] = ["--port", str(port), *BASE, *cluster]
                self.procs[port] = _start(self.args[port], folder)
            for port in self.ports:
                wait_port(port)
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )  # fmt: skip
            for port in self.ports:
                _wait(lambda port=port: self._ok(port), f"cluster_state:ok on {port}")
            if replicas:
                _wait(lambda: self._replicas_synced(masters * replicas), "every replica in sync")
        except BaseException:
            self.stop()
            raise

    def _replicas_synced(self, count: int) -> bool:
        synced = 0
        for port in self.ports:
            with redis.Redis(port=port, decode_responses=True) as client:
                info = client.info("replication")
                synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
        return synced == count

    def master_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot now."""
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
        self.procs[port] = _start(self.args[port], self.dir / str(port))
        wait_port(port)

    @staticmethod
    def _ok(port: int) -> bool:
        with redis.Redis(port=port, decode_responses=True) as client:
            info = client.execute_command("CLUSTER", "INFO")
            return "cluster_state:ok" in str(info)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelServers:
    """A master, one replica and three sentinels (quorum 2) that fail over within a few seconds."""

    MASTER = "streamq"

    def __init__(
        self,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str = "",
        sentinel_password: str = "",
    ) -> None:
        """``password``: the data servers' ``requirepass`` and ``masterauth`` (the sentinels get it as
        ``auth-pass``); ``sentinel_password``: the sentinels' own ``requirepass``."""
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
            _wait(self._replica_synced, "replica in sync")
            for port in self.sentinel_ports:
                self._sentinel(port, down_after_ms, failover_timeout_ms)
            _wait(self._sentinels_see_replica, "sentinels know the replica and each other")
        except BaseException:
            self.stop()
            raise

    def _data(self, port: int, extra: list[str]) -> None:
        folder = self.dir / str(port)
        folder.mkdir()
        self.procs[port] = _start(["--port", str(port), *BASE, *self.server_auth, *extra], folder)
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
        with redis.Redis(port=self.replica_port, decode_responses=True, **self.auth) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_see_replica(self) -> bool:
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
        self.procs[self.replica_port].send_signal(signal.SIGSTOP)
        with redis.Redis(port=self.master_port, decode_responses=True, **self.auth) as client:
            client.client_kill_filter(_type="replica")

    def resume(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGCONT)

    def restart(self, port: int) -> None:
        """Start a killed data server again, empty (no persistence): the sentinels make it a replica
        of the current master, as they do with a failed master that comes back."""
        self.procs[port] = _start(["--port", str(port), *BASE, *self.server_auth], self.dir / str(port))
        wait_port(port)

    def replicas_of(self, port: int) -> int:
        with redis.Redis(port=port, decode_responses=True, **self.auth) as client:
            info = client.info("replication")
            return sum(1 for k, v in info.items() if k.startswith("slave") and "online" in str(v))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
