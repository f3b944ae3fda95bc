"""Regenerate the vendored CRD JSON schemas (run by hand, not by the tests; see README.txt).

cloudcoil's model packages are pydantic models generated from the upstream CRDs' openAPIV3Schema; their
JSON schema is written out with unknown fields rejected (``additionalProperties: false`` on every object
with declared properties), as the API server's strict field validation does.

    python3 -m venv /tmp/crd && /tmp/crd/bin/pip install cloudcoil-models-keda==2.16.1.0 \\
        cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/crd/bin/python tests/deploy/schemas/make_crd_schemas.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def strict(node: Any) -> Any:
    """Drop pydantic's titles and null defaults; reject properties the CRD does not declare."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if k != "title" and not (k == "default" and v is None)}
    if out.get("type") == "object" and out.get("properties") and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def main() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject  # type: ignore[import-not-found]
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor  # type: ignore[import-not-found]

    for model, name in [(ScaledObject, "scaledobject_v1alpha1"), (ServiceMonitor, "servicemonitor_v1")]:
        schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        (HERE / f"{name}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
