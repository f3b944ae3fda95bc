"""deploy/k8s/ against the code: commands, settings, ports, probes, labels, KEDA streams, grace periods."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from streamq.services.api.app import create_app
from streamq.services.api.security import OPEN_PATHS as API_OPEN_PATHS
from streamq.services.worker.registry import Registry
from streamq.shared import health
from streamq.shared.auth import config_line
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import DEFAULT_PRIORITY, TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from streamq.testing import MODULES  # the service modules, by name
from tests.deploy.kustomize_lite import load_all, pod_spec, render
from tests.deploy.test_compose import _metric_names
from tests.integration.helpers import running_worker
from tests.support import ROOT

K8S = ROOT / "deploy/k8s"
OVERLAYS = ["dev", "production"]
SECRET_NAME, CONFIG_NAME = "streamq-secrets", "streamq-config"

Doc = dict[str, Any]


class Rendered:
    """One overlay's objects, with the settings its streamq containers get."""

    def __init__(self, overlay: str) -> None:
        self.overlay = overlay
        self.docs = render(K8S / "overlays" / overlay)
        secret_file = K8S / "overlays/production/secret.example.yaml"
        self.secret = self.one("Secret", SECRET_NAME) if overlay == "dev" else load_all(secret_file)[0]
        self.config: dict[str, str] = self.one("ConfigMap", CONFIG_NAME)["data"]

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str) -> Doc:
        [doc] = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        return doc

    def deployment(self, component: str) -> Doc:
        return self.one("Deployment", f"streamq-{component}")

    def container(self, component: str) -> Doc:
        [container] = pod_spec(self.deployment(component))["containers"]  # type: ignore[index]
        return container

    def environment(self) -> dict[str, str]:
        """ConfigMap and Secret as every streamq container sees them (envFrom)."""
        return {**self.config, **self.secret["stringData"]}

    def settings(self) -> Settings:
        env = self.environment()
        fields = {name[len("STREAMQ_") :].lower(): value for name, value in env.items() if name.startswith("STREAMQ_")}
        return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(request.param)


def test_every_streamq_deployment_runs_a_real_module(rendered: Rendered) -> None:
    for component, module in MODULES.items():
        container = rendered.container(component)
        assert container["command"] == ["python", "-m", module], component
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module
        assert container["image"] == rendered.container("api")["image"], component  # one image for all
        refs = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert refs == [CONFIG_NAME, SECRET_NAME], component


def test_every_variable_is_a_real_setting_with_a_valid_value(rendered: Rendered) -> None:
    fields = {f"STREAMQ_{name.upper()}" for name in Settings.model_fields}
    keda = {"KEDA_REDIS_ADDRESS", "KEDA_REDIS_USERNAME", "KEDA_REDIS_PASSWORD"}  # read by the KEDA triggers only
    names = set(rendered.environment())
    for component in MODULES:
        names |= {variable["name"] for variable in rendered.container(component).get("env", [])}
    assert names - fields - keda == set()
    settings = rendered.settings()  # raises naming any invalid value
    assert settings.api_host == settings.metrics_host == settings.dashboard_host == "0.0.0.0"
    assert settings.api_url == f"http://streamq-api:{settings.api_port}"


def named_port(container: Doc, name: str) -> int:
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def probe_targets(container: Doc) -> set[tuple[str, int]]:
    probes = [container[probe]["httpGet"] for probe in ("readinessProbe", "livenessProbe")]
    return {(probe["path"], named_port(container, probe["port"])) for probe in probes}


def probe(container: Doc, kind: str) -> tuple[str, int]:
    """(path, port) of the container's ``readiness`` or ``liveness`` probe."""
    get = container[f"{kind}Probe"]["httpGet"]
    return get["path"], named_port(container, get["port"])


def test_probes_and_ports_are_what_each_service_serves(rendered: Rendered) -> None:
    s = rendered.settings()
    api = rendered.container("api")
    assert (probe(api, "readiness"), probe(api, "liveness")) == (("/api/health", s.api_port), ("/api/live", s.api_port))
    assert probe_targets(rendered.container("dashboard")) == {("/healthz", s.dashboard_port)}
    for component in ["worker", "scheduler", "notifier"]:  # streamq.shared.health.serve on STREAMQ_METRICS_PORT
        container = rendered.container(component)
        assert probe(container, "readiness") == (health.READY_PATH, s.metrics_port), component
        assert probe(container, "liveness") == (health.LIVE_PATH, s.metrics_port), component
    assert s.metrics_port > 0  # 0 would pick a random port


def test_the_probe_paths_are_served_by_the_code() -> None:
    """The worker/scheduler/notifier probes reach streamq.shared.health's JSON answers (not /metrics text),
    and the api's are routes of the app, in its OpenAPI schema."""
    rendered = Rendered("production")
    server = health.start("127.0.0.1", 0, health.Health(), CollectorRegistry())
    try:
        for component in ["worker", "scheduler", "notifier"]:
            for kind, states in [("readiness", {"starting"}), ("liveness", {"ok"})]:
                path, _port = probe(rendered.container(component), kind)
                reply = httpx.get(f"http://127.0.0.1:{server.server_address[1]}{path}")
                assert reply.headers["content-type"] == "application/json", (component, kind)
                assert reply.json()["status"] in states, (component, kind)
    finally:
        server.shutdown()
        server.server_close()
    schema = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    for kind in ["readiness", "liveness"]:
        path, _port = probe(rendered.container("api"), kind)
        assert "get" in schema["paths"][path] and path in API_OPEN_PATHS, path


async def test_the_api_probe_answers_without_a_key_and_metrics_with_a_read_key(settings: Settings) -> None:
    """With API keys configured, kubelet's probes (no key) get 200; the ServiceMonitor needs its bearer."""
    keys = config_line("metrics", ["read"], "sq_metrics_secret")
    app = create_app(settings.model_copy(update={"api_keys": keys}))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    async with app.router.lifespan_context(app), client:
        for path in {path for path, _port in probe_targets(Rendered("production").container("api"))}:
            assert path in API_OPEN_PATHS
            assert (await client.get(path)).status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        reply = await client.get("/metrics", headers={"Authorization": "Bearer sq_metrics_secret"})
        assert reply.status_code == 200 and "streamq_queue_depth" in reply.text


async def test_the_dashboard_probe_is_open_with_keys() -> None:
    from streamq.dashboard.app import create_app as create_dashboard
    from streamq.dashboard.login import OPEN_PATHS

    keys = config_line("metrics", ["read"], "sq_metrics_secret")
    app = create_dashboard(Settings(api_keys=keys, _env_file=None))  # type: ignore[call-arg]
    # /healthz needs neither a session nor Redis: answered without the lifespan
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dashboard") as client:
        assert "/healthz" in OPEN_PATHS and (await client.get("/healthz")).status_code == 200


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_labels_and_selectors_agree(rendered: Rendered) -> None:
    deployments = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    for workload in deployments:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(workload))
        assert not any(selects(selector, pod_labels(d)) for d in deployments if d is not workload)
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        target = rendered.one("Deployment", pdb["metadata"]["name"])
        assert pdb["spec"]["selector"]["matchLabels"] == target["spec"]["selector"]["matchLabels"]
    assert {p["metadata"]["name"] for p in rendered.of_kind("PodDisruptionBudget")} == {f"streamq-{c}" for c in MODULES}
    for service in rendered.of_kind("Service"):
        [target] = [d for d in deployments if selects(service["spec"]["selector"], pod_labels(d))]
        containers = pod_spec(target)["containers"]  # type: ignore[index]
        for port in service["spec"]["ports"]:
            assert any(named_port(c, port["targetPort"]) == port["port"] for c in containers), port


def test_the_service_monitor_scrapes_every_metrics_port(rendered: Rendered) -> None:
    [monitor] = rendered.of_kind("ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    scraped = [s for s in rendered.of_kind("Service") if selects(wanted, s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in scraped} == {
        "streamq-api",
        "streamq-worker-metrics",
        "streamq-scheduler-metrics",
        "streamq-notifier-metrics",
    }
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    settings = rendered.settings()
    for service in scraped:
        [port] = [p for p in service["spec"]["ports"] if p["name"] in endpoints]
        expected = settings.api_port if service["metadata"]["name"] == "streamq-api" else settings.metrics_port
        assert port["port"] == expected and endpoints[port["name"]]["path"] == "/metrics"
    bearer = endpoints["http"]["authorization"]["credentials"]
    assert bearer == {"name": SECRET_NAME, "key": "STREAMQ_DASHBOARD_API_KEY"}
    assert bearer["key"] in rendered.secret["stringData"]


def test_keda_scales_the_worker_on_its_streams(rendered: Rendered) -> None:
    [scaled] = rendered.of_kind("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == rendered.deployment("worker")["metadata"]["name"]
    assert "replicas" not in rendered.deployment("worker")["spec"]  # owned by KEDA's HPA
    settings = rendered.settings()
    # the streams of every queue the workers consume (STREAMQ_QUEUES, else STREAMQ_QUEUE); partitions are set
    # at run time (the queue registry in Redis), so their streams are added by hand (README "Kubernetes")
    streams = [s for queue in settings.queue_weights() for s in KeySchema(settings.key_prefix, queue).streams()]
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["stream"] for t in triggers] == streams
    for trigger in triggers:
        meta = trigger["metadata"]
        # a consumerGroup would switch the scaler from XLEN to XPENDING (or the lag) and ignore streamLength
        assert trigger["type"] == "redis-streams" and "consumerGroup" not in meta
        assert int(meta["streamLength"]) == settings.worker_concurrency
        assert meta["addressFromEnv"] in rendered.config
        assert {meta["usernameFromEnv"], meta["passwordFromEnv"]} <= set(rendered.secret["stringData"])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    # one metric: the sum of every stream's length, a replica per STREAMQ_WORKER_CONCURRENCY tasks outstanding
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert sorted(modifiers["formula"].split(" + ")) == sorted(t["name"] for t in triggers)
    assert int(modifiers["target"]) == settings.worker_concurrency and modifiers["metricType"] == "AverageValue"


def test_keda_reads_the_redis_the_services_use(rendered: Rendered) -> None:
    """The triggers' address, ACL user, password, database and TLS are those of STREAMQ_REDIS_URL."""
    url = urlsplit(rendered.settings().redis_url)
    env = rendered.environment()
    [scaled] = rendered.of_kind("ScaledObject")
    for trigger in scaled["spec"]["triggers"]:
        meta = trigger["metadata"]
        assert env[meta["addressFromEnv"]] == f"{url.hostname}:{url.port}"
        assert env[meta["usernameFromEnv"]] == unquote(url.username or "")
        assert env[meta["passwordFromEnv"]] == unquote(url.password or "")
        assert meta.get("databaseIndex", "0") == (url.path.strip("/") or "0")
        assert meta.get("enableTLS", "false") == ("true" if url.scheme == "rediss" else "false")
    if rendered.overlay == "dev":  # the in-cluster Redis Service
        service = rendered.one("Service", str(url.hostname))
        assert [p["port"] for p in service["spec"]["ports"]] == [url.port]


def test_the_prometheus_alternative_names_exported_metrics() -> None:
    [scaled] = load_all(K8S / "base/scaledobject-prometheus.yaml")
    [trigger] = scaled["spec"]["triggers"]
    used = set(re.findall(r"\bstreamq_[a-z_]+\b", trigger["metadata"]["query"]))
    assert used and used <= _metric_names()
    assert scaled["metadata"]["name"] == load_all(K8S / "base/scaledobject.yaml")[0]["metadata"]["name"]


def pre_stop_seconds(container: Doc) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
    assert command[0] == "sleep"
    return int(command[1])


def test_sigterm_grace_fits_in_the_termination_grace_period(rendered: Rendered) -> None:
    grace = rendered.settings().shutdown_grace_s
    assert "STREAMQ_SHUTDOWN_GRACE_S" in rendered.config  # set explicitly, not left to the default
    for component in ["worker", "notifier", "api"]:  # these wait up to STREAMQ_SHUTDOWN_GRACE_S on SIGTERM
        spec = pod_spec(rendered.deployment(component))
        pre_stop = pre_stop_seconds(rendered.container(component))
        assert spec["terminationGracePeriodSeconds"] >= pre_stop + grace + 10, component  # type: ignore[index]


def test_containers_are_locked_down(rendered: Rendered) -> None:
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "deploy/Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_user is not None
    for workload in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet"):
        spec = pod_spec(workload)
        assert spec is not None
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        if workload["metadata"]["name"].startswith("streamq-") and workload["kind"] == "Deployment":
            assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == dockerfile_user.groups()
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


async def test_a_stream_length_is_the_worker_groups_lag_plus_pending(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    """What the KEDA triggers read (XLEN) is the work outstanding: finished entries are deleted, so the
    length is the `workers` group's lag plus its pending entries; and the lag turns unknown after a
    cancel, which is why the lagCount mode is not used."""
    release = asyncio.Event()
    registry = Registry()

    async def hold(payload: Any) -> None:
        await release.wait()

    registry.register("hold", hold)
    submitted = await queue.submit([TaskCreate(type="hold", payload=i) for i in range(6)])
    stream = keys.stream(DEFAULT_PRIORITY)
    two = settings.model_copy(update={"worker_concurrency": 2})
    async with running_worker(two, registry) as worker:
        while len(worker.consumer.running) < 2:
            await asyncio.sleep(0.01)
        [group] = await redis.xinfo_groups(stream)
        assert group["name"] == WORKER_GROUP and (group["lag"], group["pending"]) == (4, 2)
        assert await redis.xlen(stream) == group["lag"] + group["pending"] == 6
        await queue.cancel(submitted[-1].task.id)  # deletes an entry not yet delivered
        [group] = await redis.xinfo_groups(stream)
        assert await redis.xlen(stream) == 5 and group["pending"] == 2 and group["lag"] is None
        release.set()
        while await redis.xlen(stream):
            await asyncio.sleep(0.02)
    assert (await redis.xpending(stream, WORKER_GROUP))["pending"] == 0
