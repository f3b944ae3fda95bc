"""docker-compose.yml checked without a Docker engine: the Compose schema, and consistency with the code."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

import streamq.shared.metrics  # noqa: F401  (registers every metric family)
from streamq.services.api.collector import QueueCollector
from streamq.shared.health import READY_PATH
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings
from tests.support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
STREAMQ_SERVICES = {"api", "worker", "scheduler", "notifier", "dashboard"}
# settings read by something other than the Settings class
EXTRA_VARIABLES = {"STREAMQ_HEALTHCHECK_URL"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "deploy/schema/compose-spec.json").read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = [e.message for e in jsonschema.Draft201909Validator(schema).iter_errors(compose)]
    assert errors == []


def test_every_service_and_its_command_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert STREAMQ_SERVICES | {"redis", "prometheus", "grafana", "mailpit"} <= set(services)
    for name in STREAMQ_SERVICES:
        command = services[name]["command"]
        assert command[:2] == ["python", "-m"], name
        module = command[2]
        assert importlib.util.find_spec(module) is not None, f"{name}: module {module} not found"
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{name}: {module} has no __main__"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_every_streamq_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    fields = {f"STREAMQ_{name.upper()}" for name in Settings.model_fields}
    for name in STREAMQ_SERVICES:
        for variable in compose["services"][name]["environment"]:
            if variable.startswith("STREAMQ_"):
                assert variable in fields | EXTRA_VARIABLES, f"{name}: {variable} is not a setting"
    example = (ROOT / ".env.example").read_text()
    for variable in re.findall(r"^(STREAMQ_[A-Z_]+)=", example, re.MULTILINE):
        assert variable in fields, f".env.example: {variable} is not a setting"


def test_ports_and_healthchecks_are_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis = services["redis"]["command"]
    for flag, value in [("--appendonly", "yes"), ("--appendfsync", "everysec"), ("--maxmemory-policy", "noeviction")]:
        assert redis[redis.index(flag) + 1] == value
    assert services["worker"]["deploy"]["replicas"] == 3 and services["scheduler"]["deploy"]["replicas"] == 2
    for name in STREAMQ_SERVICES:
        service = services[name]
        env = service["environment"]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "streamq.shared.healthcheck"], name
        url = env["STREAMQ_HEALTHCHECK_URL"]
        port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
        own_ports = {int(env.get("STREAMQ_METRICS_PORT", 0))}
        if name == "api":
            own_ports.add(int(env["STREAMQ_API_PORT"]))
            assert url.endswith("/api/health")  # readiness (Redis answers); compose restarts nothing on it
        if name in ("worker", "scheduler", "notifier"):  # streamq.shared.health next to /metrics
            assert url == f"http://127.0.0.1:{env['STREAMQ_METRICS_PORT']}{READY_PATH}", name
        if name == "dashboard":
            own_ports.add(int(env["STREAMQ_DASHBOARD_PORT"]))
        assert port in own_ports, f"{name}: health check port {port} is none of its ports {own_ports}"
        for mapping in service.get("ports", []):
            host, container = (int(p) for p in mapping.split(":"))
            assert container in own_ports and host == container, f"{name}: port {mapping}"
    assert services["dashboard"]["environment"]["STREAMQ_API_URL"] == "http://api:8080"
    assert services["worker"]["environment"]["STREAMQ_SMTP_HOST"] == "mailpit"
    assert int(services["worker"]["environment"]["STREAMQ_SMTP_PORT"]) == 1025


def _metric_names() -> set[str]:
    """Every sample name the services export: the shared families and the api's scrape-time ones."""
    names = set()
    scrape_time = QueueCollector(None, KeySchema()).collect()  # type: ignore[arg-type]  # no Redis needed
    for family in [*REGISTRY.collect(), *scrape_time]:
        if family.name.startswith("streamq_"):
            for sample in family.samples:
                names.add(sample.name)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
            names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def _exprs_in_grafana() -> list[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/streamq.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _exprs_in_alerts() -> list[str]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", ["grafana", "alerts"])
def test_queries_name_only_exported_metrics(source: str) -> None:
    exprs = _exprs_in_grafana() if source == "grafana" else _exprs_in_alerts()
    exported = _metric_names()
    used = {name for expr in exprs for name in re.findall(r"\bstreamq_[a-z_]+\b", expr)}
    assert used, "no streamq metric used"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_grafana_provisioning_points_at_prometheus() -> None:
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [ds] = datasource["datasources"]
    assert ds["uid"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/streamq.yml").read_text())
    compose_volumes = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    target = provider["providers"][0]["options"]["path"]
    assert any(v.endswith(f":{target}:ro") for v in compose_volumes)
    for panel in json.loads((ROOT / "deploy/grafana/dashboards/streamq.json").read_text())["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"


def test_env_example_covers_compose_substitutions(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    substituted = set(re.findall(r"\$\{([A-Z_]+):-", text))
    example = set(re.findall(r"^(?:# )?([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert substituted <= example, f"missing from .env.example: {sorted(substituted - example)}"


def test_dockerfile_paths_exist() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert Path(ROOT / "shared/healthcheck.py").exists()
