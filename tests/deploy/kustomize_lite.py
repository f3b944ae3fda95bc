"""A small renderer for exactly the kustomize features deploy/k8s/ uses, so the tests need no binary.

Supported in a ``kustomization.yaml``: ``resources`` (files and directories with their own kustomization),
``patches`` with a ``path`` to a strategic-merge patch of one object (found by kind and name),
``images`` (``newName``/``newTag``) and ``namespace``. Anything else is refused (``ValueError``), so a
manifest change that needs more fails here instead of being rendered wrongly. Where ``kubectl kustomize``
or ``kustomize`` is installed, tests/deploy/test_k8s.py checks that both render the same objects.

Strategic merge as the API server does it for the fields the patches touch: maps merge, ``null`` deletes,
lists of containers, init containers, env and volumes of built-in kinds merge by ``name``, other lists
(and every list of a custom resource, which has no merge keys) are replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
FIELDS = {"apiVersion", "kind", "resources", "patches", "images", "namespace"}
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}
BUILT_IN_GROUPS = ("v1", "apps/", "batch/", "policy/", "autoscaling/", "networking.k8s.io/", "rbac.")


def render(directory: Path) -> list[Doc]:
    """The objects ``kustomize build directory`` would print (in file order, not kustomize's order)."""
    kustomization: Doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - FIELDS
    if unknown:
        raise ValueError(f"{directory}: kustomization fields not supported by this renderer: {sorted(unknown)}")
    docs: list[Doc] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        docs += render(path) if path.is_dir() else load_all(path)
    for patch in kustomization.get("patches", []):
        apply_patch(docs, patch, directory)
    for image in kustomization.get("images", []):
        set_image(docs, image)
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def load_all(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply_patch(docs: list[Doc], patch: Doc, directory: Path) -> None:
    if set(patch) != {"path"}:
        raise ValueError(f"{directory}: only `patches: - path: FILE` is supported, not {sorted(patch)}")
    [body] = load_all(directory / patch["path"])
    targets = [d for d in docs if d["kind"] == body["kind"] and d["metadata"]["name"] == body["metadata"]["name"]]
    if len(targets) != 1:
        raise ValueError(f"{patch['path']}: {len(targets)} objects match {body['kind']}/{body['metadata']['name']}")
    built_in = targets[0]["apiVersion"].startswith(BUILT_IN_GROUPS)
    merge(targets[0], body, built_in)


def merge(base: Doc, patch: Doc, built_in: bool) -> None:
    for key, value in patch.items():
        if key.startswith("$"):
            raise ValueError(f"patch directive {key} is not supported")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, built_in)
        elif isinstance(value, list) and isinstance(base.get(key), list) and built_in and key in MERGE_BY_NAME:
            merge_named(base[key], value, built_in)
        else:
            base[key] = copy.deepcopy(value)


def merge_named(base: list[Doc], patch: list[Doc], built_in: bool) -> None:
    by_name = {item["name"]: item for item in base}
    for item in patch:
        if item["name"] in by_name:
            merge(by_name[item["name"]], item, built_in)
        else:
            base.append(copy.deepcopy(item))


def pod_spec(doc: Doc) -> Doc | None:
    template = doc.get("spec", {}).get("template")
    return template.get("spec") if isinstance(template, dict) else None


def set_image(docs: list[Doc], image: Doc) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise ValueError(f"images: only name, newName and newTag are supported, not {sorted(image)}")
    for doc in docs:
        spec = pod_spec(doc)
        for container in [*(spec or {}).get("containers", []), *(spec or {}).get("initContainers", [])]:
            name, tag = split_image(container["image"])
            if name == image["name"]:
                tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


def split_image(reference: str) -> tuple[str, str]:
    """``registry:5000/team/app:1.2`` -> (``registry:5000/team/app``, ``1.2``); no digests."""
    head, _, last = reference.rpartition("/")
    base, _, tag = last.partition(":")
    return (f"{head}/{base}" if head else base), tag
