"""deploy/k8s/ rendered and checked against the Kubernetes and CRD schemas, without a cluster.

Rendering: tests/deploy/kustomize_lite.py (the kustomize features the manifests use); where ``kubectl
kustomize`` or ``kustomize`` is installed, the same objects must come out of it. Schemas: the core kinds
with kubernetes-validate (the official OpenAPI schemas, strict: unknown fields fail), ScaledObject and
ServiceMonitor with the vendored CRD schemas in tests/deploy/schemas/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize_lite import load_all, render
from tests.support import ROOT

K8S = ROOT / "deploy/k8s"
OVERLAYS = ["dev", "production"]
K8S_VERSIONS = ["1.30", "1.34"]  # the oldest and a recent minor version the manifests must suit
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json",
}
# files in deploy/k8s/ that no kustomization lists, validated on their own
STANDALONE = ["base/scaledobject-prometheus.yaml", "overlays/production/secret.example.yaml"]

Doc = dict[str, Any]


def key(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def every_document() -> list[tuple[str, Doc]]:
    docs = [(overlay, doc) for overlay in OVERLAYS for doc in render(K8S / "overlays" / overlay)]
    return docs + [(name, doc) for name in STANDALONE for doc in load_all(K8S / name)]


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kustomize(overlay: str) -> None:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: rendered with tests/deploy/kustomize_lite.py only")
    out = subprocess.run([*command, str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    real = {key(doc): doc for doc in yaml.safe_load_all(out.stdout) if doc}
    mine = {key(doc): doc for doc in render(K8S / "overlays" / overlay)}
    assert sorted(mine) == sorted(real)
    assert [k for k in mine if mine[k] != real[k]] == []


def test_every_manifest_file_is_rendered_or_validated_alone() -> None:
    """No manifest escapes the checks: each YAML file is a kustomization, listed by one, or standalone."""
    listed = {K8S / name for name in STANDALONE}
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed.add(kustomization)
        spec = yaml.safe_load(kustomization.read_text())
        for entry in [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []))]:
            listed.add((kustomization.parent / entry).resolve())
    files = {p.resolve() for p in K8S.rglob("*.yaml")}
    assert files - {p.resolve() for p in listed} == set()


@pytest.mark.parametrize(("source", "doc"), every_document(), ids=lambda v: v if isinstance(v, str) else key(v)[2])
def test_matches_its_schema(source: str, doc: Doc) -> None:
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        schema = json.loads((ROOT / "tests/deploy/schemas" / crd).read_text())
        validator = jsonschema.Draft202012Validator(schema)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == []
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)  # raises naming the field


def test_the_schemas_reject_what_they_should() -> None:
    """Guards against a validator that accepts anything: a typo and a wrong type fail each schema."""
    docs = {doc["kind"]: doc for doc in render(K8S / "overlays/dev")}
    for kind in ["ScaledObject", "ServiceMonitor"]:
        schema = json.loads((ROOT / "tests/deploy/schemas" / CRD_SCHEMAS[(docs[kind]["apiVersion"], kind)]).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        for bad in [{"typo": 1}, {"endpoints" if kind == "ServiceMonitor" else "triggers": "not a list"}]:
            doc = json.loads(json.dumps(docs[kind]))
            doc["spec"].update(bad)
            assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc)), (kind, bad)
    deployment = json.loads(json.dumps(docs["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(ValueError, match="commonLabels"):
        render(tmp_path)
