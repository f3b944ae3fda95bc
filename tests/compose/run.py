#!/usr/bin/env python3
"""`make test-compose`: the project's docker-compose.yml brought up for real, on Debian's podman.

1. Installs what it needs with apt (podman, runc, debootstrap, docker-compose); where it cannot (not
   Linux, not root, no apt, the install fails) it prints why and exits 0.
2. Builds images without a registry: a Debian bookworm minbase (debootstrap from the mirror the apt sources
   name, cached in STREAMQ_COMPOSE_CACHE), Python/Redis/Prometheus images on it from Debian packages
   (cached in podman's storage, tagged by a hash of what they are built from), the project's wheels built on
   the host (pip installs them offline in the image), then deploy/Dockerfile with BASE_IMAGE set.
3. In a network namespace of its own (the file's published ports are free there, see
   deploy/compose-test/override.yml), serves the Docker API with `podman system service`, runs
   `docker-compose up` with the override and checks what users rely on (assertions in ``check_stack``),
   then `down -v` and that no container, network or volume is left.

Standard library only. Every wait is bounded; on failure the containers' state and logs are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "deploy/compose-test"
OVERRIDE = IMAGES / "override.yml"
CACHE = Path(os.environ.get("STREAMQ_COMPOSE_CACHE", "/var/cache/streamq-compose-test"))
SUITE = "bookworm"  # Python 3.11, like python:3.11-slim
APT_PACKAGES = [
    "podman",
    "runc",
    "debootstrap",
    "docker-compose",
    "netavark",
    "aardvark-dns",
    "iptables",
    "iproute2",
]
BINARIES = ["podman", "runc", "debootstrap", "docker-compose", "ip", "unshare", "iptables"]
# the published ports of docker-compose.yml, reached on 127.0.0.1 inside the test's network namespace
API, DASHBOARD, PROMETHEUS = "http://127.0.0.1:8080", "http://127.0.0.1:8081", "http://127.0.0.1:9090"
WORKERS, SCHEDULERS = 3, 2
T = TypeVar("T")


class Skip(Exception):
    """The engine cannot be installed or run on this machine: the reason is printed and the run exits 0."""


class Failure(Exception):
    """An assertion about the stack did not hold."""


def log(message: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], *, timeout: float = 120, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as err:
        raise Failure(f"`{' '.join(cmd)}` still running after {timeout:.0f} s") from err
    if check and proc.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


# ---- 1. the engine ---------------------------------------------------------------------------------


def containers_conf(workdir: Path) -> Path:
    """Podman settings this machine needs: crun refuses its hybrid cgroup layout (runc works), no systemd
    (cgroupfs, file events), and default ulimits no higher than the host's hard limits (no CAP_SYS_RESOURCE)."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    nproc = 32768 if nproc == resource.RLIM_INFINITY else nproc
    path = workdir / "containers.conf"
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    return path


def ensure_engine() -> None:
    if sys.platform != "linux":
        raise Skip(f"containers need Linux; this is {platform.system()}")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Skip(f"{', '.join(missing)} missing and installing them needs root (apt-get install {APT_PACKAGES})")
    if shutil.which("apt-get") is None:
        raise Skip(f"{', '.join(missing)} missing and there is no apt-get to install them")
    log(f"installing {' '.join(APT_PACKAGES)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    for cmd in (["apt-get", "update", "-q"], install):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise Skip(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    still = [b for b in BINARIES if shutil.which(b) is None]
    if still:
        raise Skip(f"still missing after apt-get install: {', '.join(still)}")


def debian_mirror() -> str:
    """The Debian archive the machine's apt sources name for the main suite (never a hard-coded host)."""
    sources = Path("/etc/apt/sources.list.d")
    texts = [p.read_text() for p in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*"))] if p.is_file()]
    for text in texts:
        # one-line format: deb [options] URI SUITE COMPONENTS
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.MULTILINE):
            if m.group(2) == SUITE:
                return m.group(1)
        # deb822 format: stanzas with URIs: and Suites:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    raise Skip(f"no Debian {SUITE} mirror in the apt sources to debootstrap the base image from")


# ---- 2. images ---------------------------------------------------------------------------------------


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], timeout=timeout, check=check)


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def keep_only(name: str, tag: str) -> None:
    """Remove the other tags of a cached image, so the storage holds one version of each."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={name}").stdout.split()
    stale = [ref for ref in listed if ref != f"{name}:{tag}"]
    if stale:
        podman("rmi", "--force", *stale, check=False)


def debian_base() -> str:
    """localhost/streamq-ci/debian: debootstrap --variant=minbase, imported. The rootfs tarball is cached in
    CACHE (rebuilt when missing), the image in podman's storage (re-imported when missing)."""
    mirror = debian_mirror()
    key = hashlib.sha256(f"{SUITE} minbase {mirror}".encode()).hexdigest()[:12]
    tarball = CACHE / f"debian-{SUITE}-minbase-{key}.tar"
    if not tarball.exists():
        log(f"debootstrap --variant=minbase {SUITE} {mirror} (cached in {CACHE})")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], timeout=600)
            run(["tar", "-C", str(rootfs), "-cf", f"{tarball}.part", "."], timeout=300)
            os.replace(f"{tarball}.part", tarball)
    ref = f"localhost/streamq-ci/debian:{key}"
    if podman("image", "exists", ref, check=False).returncode != 0:
        log(f"podman import {tarball.name}")
        podman("import", str(tarball), ref, timeout=300)
        keep_only("localhost/streamq-ci/debian", key)
    return ref


def build(name: str, containerfile: str, base: str, context: Path, extra: str = "") -> str:
    """Build deploy/compose-test/<containerfile> on ``base`` unless an image of the same inputs exists."""
    text = (IMAGES / containerfile).read_text()
    key = hashlib.sha256(f"{text}\0{image_id(base)}\0{extra}".encode()).hexdigest()[:12]
    ref = f"localhost/streamq-ci/{name}:{key}"
    if podman("image", "exists", ref, check=False).returncode != 0:
        log(f"building {ref}")
        podman(
            "build",
            "-q",
            "--build-arg",
            f"BASE={base}",
            "-f",
            str(IMAGES / containerfile),
            "-t",
            ref,
            str(context),
            timeout=600,
        )
        keep_only(f"localhost/streamq-ci/{name}", key)
    return ref


def wheelhouse(into: Path, python: str) -> list[str]:
    """The project's dependencies, its build backend and the SMTP sink's aiosmtpd as wheels, downloaded on the
    host (with its own pip settings and certificates; inside an image build HTTPS fails certificate checks here).
    The host's pip evaluates markers for the host's Python, so the image's own pip then resolves the same
    requirements offline from the wheels, and what it finds missing (e.g. a backport for Python < 3.11.3)
    is added, until it resolves."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    server = project["project"]["optional-dependencies"]["server"]  # the services need the server extra
    reqs = [*project["project"]["dependencies"], *server, *project["build-system"]["requires"], "aiosmtpd"]
    wanted = reqs
    for _ in range(5):
        run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(into), *wanted], timeout=600)
        script = 'python -m venv /tmp/v && /tmp/v/bin/pip download -q --no-index -f /wheels -d /tmp/d "$@"'
        proc = podman(
            "run",
            "--rm",
            "--network=none",
            "-v",
            f"{into}:/wheels:ro",
            python,
            "sh",
            "-c",
            script,
            "resolve",
            *reqs,
            timeout=300,
            check=False,
        )
        if proc.returncode == 0:
            return sorted(p.name for p in into.glob("*.whl"))
        missing = re.findall(r"No matching distribution found for (\S+)", proc.stdout + proc.stderr)
        if not missing:
            raise Failure(f"the image's pip cannot resolve the wheels:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        wanted = [m.split(";")[0] for m in missing]  # its markers were evaluated by the image's Python
    raise Failure(f"the image's pip still misses {wanted} after 5 rounds")


def build_images(workdir: Path, run_id: str) -> dict[str, str]:
    debian = debian_base()
    python = build("python", "python.Containerfile", debian, IMAGES)
    context = workdir / "wheels-context"
    names = wheelhouse(context / "wheels", python)
    wheels = build("wheels", "wheels.Containerfile", python, context, "\n".join(names))
    sink_source = (ROOT / "deploy/smtp_sink/__main__.py").read_text()
    images = {
        "STREAMQ_CI_REDIS_IMAGE": build("redis", "redis.Containerfile", debian, IMAGES),
        "STREAMQ_CI_PROMETHEUS_IMAGE": build("prometheus", "prometheus.Containerfile", debian, IMAGES),
        "STREAMQ_CI_SMTP_SINK_IMAGE": build(
            "smtp-sink", "smtp-sink.Containerfile", wheels, ROOT / "deploy", sink_source
        ),
    }
    project = f"localhost/streamq-ci/streamq:{run_id}"
    log(f"building {project} from deploy/Dockerfile (BASE_IMAGE={wheels})")
    podman(
        "build",
        "-q",
        "--build-arg",
        f"BASE_IMAGE={wheels}",
        "-f",
        str(ROOT / "deploy/Dockerfile"),
        "-t",
        project,
        str(ROOT),
        timeout=600,
    )
    images["STREAMQ_CI_IMAGE"] = project
    return images


# ---- 3. the stack ------------------------------------------------------------------------------------


class Stack:
    """docker-compose against the podman service of this namespace, plus podman for what compose lacks."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = env

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = ["docker-compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE)]
        return run([*cmd, *args], timeout=timeout, env=self.env, cwd=ROOT)

    def containers(self, all_: bool = False) -> list[str]:
        args = ["ps", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={self.project}"]
        return sorted(podman(*args, *(["-a"] if all_ else [])).stdout.split())

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(podman("inspect", name).stdout)
        return data[0]

    def health(self, name: str) -> str | None:
        state = self.inspect(name)["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        status = health.get("Status")
        return str(status) if status else None

    @contextlib.contextmanager
    def healthchecks(self) -> Iterator[None]:
        """Without systemd podman never runs healthchecks by itself: run each container's every 2 s."""
        stop = threading.Event()

        def pump() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    for name in self.containers():
                        podman("healthcheck", "run", name, timeout=20, check=False)
                stop.wait(2)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(30)

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = [f"container {c}" for c in self.containers(all_=True)]
        found += [f"network {n}" for n in podman("network", "ls", "-q", "--filter", label).stdout.split()]
        found += [f"volume {v}" for v in podman("volume", "ls", "-q", "--filter", label).stdout.split()]
        return found

    def diagnostics(self) -> None:
        print("=" * 30 + " diagnostics", flush=True)
        print(podman("ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}", check=False).stdout)
        for name in self.containers(all_=True):
            state = self.inspect(name)["State"]
            health = state.get("Health") or state.get("Healthcheck") or {}
            print(f"----- {name}: {state.get('Status')} exit={state.get('ExitCode')} health={health.get('Status')}")
            for entry in (health.get("Log") or [])[-2:]:
                print(f"  healthcheck exit {entry.get('ExitCode')}: {str(entry.get('Output', '')).strip()[:300]}")
            logs = podman("logs", "--tail", "60", name, check=False)
            print((logs.stdout + logs.stderr)[-6000:], flush=True)


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Poll ``check`` until it returns a value; bounded, with the last error or value in the failure."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
            last = value
        except (OSError, Failure, ValueError, KeyError) as err:
            last = err
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def submit(tasks: list[dict[str, Any]]) -> list[str]:
    status, body = http("POST", f"{API}/api/tasks/batch", {"tasks": tasks})
    if status not in (200, 201):
        raise Failure(f"batch submit answered {status}: {body}")
    return [task["id"] for task in body["tasks"]]


def task(task_id: str) -> dict[str, Any]:
    status, body = http("GET", f"{API}/api/tasks/{task_id}")
    if status != 200:
        raise Failure(f"GET /api/tasks/{task_id} answered {status}: {body}")
    result: dict[str, Any] = body
    return result


def all_completed(ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        tasks = {i: task(i) for i in ids}
        bad = {i: t["status"] for i, t in tasks.items() if t["status"] in ("failed", "cancelled")}
        if bad:
            raise Failure(f"tasks ended badly: {bad}")
        return tasks if all(t["status"] == "completed" for t in tasks.values()) else None

    return wait_for(f"{len(ids)} tasks to complete", check, timeout)


def services() -> list[dict[str, Any]]:
    status, body = http("GET", f"{API}/api/services")
    if status != 200:
        raise Failure(f"/api/services answered {status}")
    result: list[dict[str, Any]] = body
    return result


def held_by(stack: Stack, container: str, ids: list[str]) -> tuple[str, list[str]]:
    """The worker id running in ``container`` and which of ``ids`` it is running now (at least one)."""
    host = stack.inspect(container)["Config"]["Hostname"]

    def check() -> tuple[str, list[str]] | None:
        running = [(t["worker"], i) for i in ids if (t := task(i))["status"] == "processing"]
        mine = [(w, i) for w, i in running if w and w.startswith(f"{host}:")]
        return (mine[0][0], [i for _, i in mine]) if mine else None

    return wait_for(f"{container} to run one of the tasks", check, 60, interval=0.2)


def prometheus_query(expr: str) -> float:
    status, body = http("GET", f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    if status != 200:
        raise Failure(f"Prometheus query answered {status}: {body}")
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def check_stack(stack: Stack) -> None:
    """The assertions of issue 25, in order; the worker stop and kill come last (they take workers away)."""
    names = stack.containers()
    gated = [n for n in names if stack.health(n) is not None]
    log(f"{len(names)} containers, {len(gated)} health-checked; waiting for every one to be healthy")

    def all_healthy() -> bool:
        waiting = [f"{n}={stack.health(n)}" for n in gated if stack.health(n) != "healthy"]
        if waiting:
            raise Failure(f"not yet: {', '.join(waiting)}")
        return True

    wait_for("every health-checked container to be healthy", all_healthy, 180, 2)
    expected = {"redis", "api", "worker", "scheduler", "notifier", "dashboard", "prometheus", "mailpit"}
    services_up = {stack.inspect(n)["Config"]["Labels"]["com.docker.compose.service"] for n in gated}
    if services_up != expected:
        raise Failure(f"health-checked services {sorted(services_up)}, expected {sorted(expected)}")
    log(f"healthy: {', '.join(gated)}")

    def counts() -> dict[str, int] | None:
        kinds = [s["kind"] for s in services()]
        found = {k: kinds.count(k) for k in ("worker", "scheduler")}
        return found if found == {"worker": WORKERS, "scheduler": SCHEDULERS} else None

    log(f"/api/services: {wait_for('3 workers and 2 schedulers in /api/services', counts, 60)}")

    baseline = prometheus_query("sum(streamq_tasks_finished_total)")
    mail_to = f"ci-{stack.project}@example.com"
    later = datetime.now(UTC) + timedelta(seconds=4)
    ids = submit(
        [
            *({"type": "echo", "payload": n} for n in range(20)),
            {"type": "echo", "payload": "later", "scheduled_for": later.isoformat()},
            {"type": "email", "payload": mail_to},
        ]
    )
    done = all_completed(ids, 120)
    delayed = done[ids[20]]
    due = datetime.fromisoformat(delayed["scheduled_for"])  # as stored: millisecond precision
    if (
        delayed["result"] != "later"
        or abs((due - later).total_seconds()) > 0.001
        or datetime.fromisoformat(delayed["started_at"]) < due
    ):
        raise Failure(f"the delayed task ran before its time ({later}): {delayed}")
    if done[ids[21]]["result"]["accepted"] != [mail_to]:
        raise Failure(f"the email was not accepted by the sink: {done[ids[21]]}")
    sink = next(n for n in names if "_mailpit_" in n)
    wait_for(f"the email to {mail_to} in the sink's output", lambda: f"to {mail_to}" in podman("logs", sink).stdout, 30)
    log("22 tasks completed through the published api port: 20 echo, a delayed one after its time, an email")

    def targets_up() -> list[str] | None:
        _, body = http("GET", f"{PROMETHEUS}/api/v1/targets")
        active = [t for t in body["data"]["activeTargets"] if t["labels"]["job"].startswith("streamq-")]
        jobs = sorted(t["labels"]["job"] for t in active if t["health"] == "up")
        want = sorted(
            ["streamq-api", "streamq-notifier"] + ["streamq-worker"] * WORKERS + ["streamq-scheduler"] * SCHEDULERS
        )
        return jobs if jobs == want and len(active) == len(want) else None

    log(f"Prometheus targets up: {wait_for('every streamq target up in Prometheus', targets_up, 120, 3)}")
    moved = wait_for(
        "streamq_tasks_finished_total to move in Prometheus",
        lambda: (v := prometheus_query("sum(streamq_tasks_finished_total)")) >= baseline + len(ids) and v,
        90,
        3,
    )
    log(f"sum(streamq_tasks_finished_total): {baseline:.0f} -> {moved:.0f}")

    for path in ("/healthz", "/"):
        status, body = http("GET", f"{DASHBOARD}{path}")
        if status != 200:
            raise Failure(f"dashboard {path} answered {status}: {str(body)[:300]}")
    log("dashboard answers / and /healthz")

    workers = sorted(n for n in names if "_worker_" in n)
    graceful_stop(stack, workers[0])
    kill_worker(stack, workers[1])


def graceful_stop(stack: Stack, container: str) -> None:
    """`docker compose stop` of one worker while tasks run: it drains (finishes what it runs) and exits 0."""
    ids = submit([{"type": "sleep", "payload": 3} for _ in range(12)])
    worker_id, held = held_by(stack, container, ids)
    grace = str(stack.inspect(container)["Config"].get("StopTimeout") or 40)
    log(f"stopping {container} ({worker_id}, running {len(held)} tasks) with a {grace} s grace")
    podman("stop", "--time", grace, container, timeout=90)
    state = stack.inspect(container)["State"]
    if state["ExitCode"] != 0:
        raise Failure(f"{container} exited {state['ExitCode']} on SIGTERM, expected 0")
    done = all_completed(ids, 120)
    elsewhere = {i: done[i]["worker"] for i in held if done[i]["worker"] != worker_id}
    if elsewhere:
        raise Failure(f"{container} did not finish its own tasks before exiting: {elsewhere}")
    log(f"{container} exited 0 after finishing its {len(held)} running tasks; all 12 completed")


def kill_worker(stack: Stack, container: str) -> None:
    """A worker SIGKILLed mid-run loses nothing: the others reclaim its tasks after the lease and finish them."""
    ids = submit([{"type": "sleep", "payload": 3} for _ in range(9)])
    worker_id, held = held_by(stack, container, ids)
    log(f"SIGKILL {container} ({worker_id}, running {len(held)} tasks)")
    podman("kill", "--signal", "KILL", container)
    done = all_completed(ids, 180)  # the lease (30 s) runs out, then a reclaim pass (every 15 s) takes them
    again = {i: done[i]["worker"] for i in held if done[i]["worker"] == worker_id}
    if again:
        raise Failure(f"tasks recorded as finished by the killed worker: {again}")
    retried = {i: done[i]["attempts"] for i in held if done[i]["attempts"] != 1}
    if retried:
        raise Failure(f"the crash used up attempts: {retried}")
    log(f"the {len(held)} tasks of the killed worker completed on others, as attempt 1; all 9 completed")


def stack_phase(workdir: Path, project: str, images: dict[str, str]) -> int:
    """Runs inside `unshare --net`: loopback up, the podman API service, compose up, checks, down -v."""
    run(["ip", "link", "set", "lo", "up"])
    sock = workdir / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=(workdir / "podman-service.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    env = {**os.environ, **images, "DOCKER_HOST": f"unix://{sock}", "COMPOSE_HTTP_TIMEOUT": "180"}
    stack = Stack(project, env)
    code = 1
    try:
        wait_for("the podman API socket", lambda: sock.exists(), 30, 0.1)
        with stack.healthchecks():
            started = time.monotonic()
            stack.compose("up", "-d", "--no-build", timeout=300)
            log(f"compose up -d returned in {time.monotonic() - started:.0f} s")
            check_stack(stack)
        code = 0
    except Failure as err:
        stack.diagnostics()
        log(f"FAILED: {err}")
    finally:
        code = min(code + tear_down(stack), 1)
        service.terminate()
        service.wait(30)
    return code


def tear_down(stack: Stack) -> int:
    started = time.monotonic()
    try:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "45", timeout=180)
    except (Failure, subprocess.TimeoutExpired) as err:
        log(f"FAILED: {err}")
        return 1
    log(f"compose down -v in {time.monotonic() - started:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", help=argparse.SUPPRESS)  # internal: the phase run in the network namespace
    args = parser.parse_args()
    if args.stack:
        state = json.loads(args.stack)
        os.environ["CONTAINERS_CONF"] = state["containers_conf"]
        return stack_phase(Path(state["workdir"]), state["project"], state["images"])

    started = time.monotonic()
    try:
        ensure_engine()
    except Skip as err:
        log(f"SKIPPED, no container engine here: {err}")
        return 0
    run_id = f"{os.getpid()}{int(time.time()) % 100000}"
    project = f"streamqci{run_id}"
    with tempfile.TemporaryDirectory(prefix="streamq-compose-") as tmp:
        workdir = Path(tmp)
        os.environ["CONTAINERS_CONF"] = str(containers_conf(workdir))
        os.environ["BUILDAH_FORMAT"] = "docker"  # OCI images drop HEALTHCHECK
        images: dict[str, str] = {}
        try:
            try:
                images = build_images(workdir, run_id)
            except Skip as err:
                log(f"SKIPPED: {err}")
                return 0
            log(f"images ready in {time.monotonic() - started:.0f} s")
            conf = os.environ["CONTAINERS_CONF"]
            state = {"workdir": tmp, "project": project, "images": images, "containers_conf": conf}
            try:
                child = ["unshare", "--net", "--", sys.executable, __file__, "--stack", json.dumps(state)]
                code = subprocess.run(child, timeout=900).returncode
            except subprocess.TimeoutExpired:
                log("FAILED: the stack phase ran over 900 s")
                code = 1
            leftovers = Stack(project, dict(os.environ)).leftovers()
            if leftovers:
                log(f"FAILED: `down -v` left {', '.join(leftovers)}; removing them")
                cleanup(project)
                code = code or 1
            elif code == 0:
                log("down -v left no container, network or volume")
        except Failure as err:
            log(f"FAILED: {err}")
            code = 1
        finally:
            if "STREAMQ_CI_IMAGE" in images:
                podman("rmi", "--force", images["STREAMQ_CI_IMAGE"], check=False)
            podman("image", "prune", "--force", check=False)  # the layers of replaced images
    log(f"{'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return code


def cleanup(project: str) -> None:
    label = f"label=com.docker.compose.project={project}"
    for kind in ("container", "network", "volume"):
        listed = podman(kind, "ls", "-aq" if kind == "container" else "-q", "--filter", label, check=False)
        for item in listed.stdout.split():
            podman(kind, "rm", "--force", item, check=False)


if __name__ == "__main__":
    sys.exit(main())
