"""MkDocs hook: pages generated from the code at build time, never copied by hand.

A page holds a marker and the hook replaces it with Markdown:

- ``<!-- generated: api -->``: every path and method of the api's OpenAPI schema
  (``create_app(Settings(_env_file=None)).openapi()``): summary, description, parameters, request body,
  answers, then every schema the answers and bodies name.
- ``<!-- generated: settings -->``: every field of ``Settings``, as ``STREAMQ_<NAME>`` with type, default and
  description; ``<!-- generated: settings name1 name2 ... -->`` renders only those fields (by field name).

A marker naming an unknown field, or a setting without a description (the docstring under its field), fails the build.
``render_api()`` and ``render_settings()`` are plain functions: ``tests/test_docs.py`` calls them too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's streamq when mkdocs runs outside the venv's editable install
    sys.path.insert(0, str(ROOT))

from pydantic.fields import FieldInfo  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

# a marker is a line of its own (one quoted inside a sentence or code is left alone)
MARKER = re.compile(r"^<!--\s*generated:\s*(\w+)((?:[ \t]+\w+)*)\s*-->$", re.MULTILINE)


# --- settings ---


def env_name(field: str) -> str:
    return f"STREAMQ_{field.upper()}"


def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    raw = str(annotation)
    if "SecretStr" in raw:
        text = "secret"
    elif raw.startswith("list[float]"):
        text = "comma-separated numbers"
    elif raw.startswith("list["):
        text = "comma-separated list"
    elif raw in ("str | None", "typing.Optional[str]"):
        text = "str (optional)"
    bounds = []
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
        pattern = getattr(item, "pattern", None)
        if pattern and "|" in pattern and pattern.startswith("^("):  # an enumeration: show the choices
            bounds.append("one of " + ", ".join(pattern[2:-2].split("|")))
    return text + (f", {', '.join(bounds)}" if bounds else "")


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is PydanticUndefined or value is None:
        return "(none)"
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, list):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, float):
        value = f"{value:g}"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def setting_description(name: str, info: FieldInfo) -> str:
    description = info.description
    if not description:
        raise ValueError(f"setting {name} has no description (a docstring under its field in shared/settings.py)")
    return " ".join(description.split())


def render_settings(names: list[str] | None = None) -> str:
    from streamq.shared.settings import Settings

    fields = Settings.model_fields
    unknown = [n for n in names or [] if n not in fields]
    if unknown:
        raise ValueError(f"unknown settings in a docs marker: {unknown}")
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name in names or list(fields):
        info = fields[name]
        cells = [f"`{env_name(name)}`", _type_text(info), _default_text(info), setting_description(name, info)]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


# --- api ---


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str | None) -> str:
    return re.sub(r"``([^`]+)``", r"`\1`", (text or "").strip())


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        parts = [_schema_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in schema["anyOf"])
        return " or ".join(parts) + (" or null" if nullable else "")
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_schema_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"object of {_schema_type(schema['additionalProperties'])}"
    limits = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in schema:
            value = schema[key]
            limits.append(f"{sign} {int(value) if float(value).is_integer() else value}")
    if "maxLength" in schema:
        limits.append(f"up to {schema['maxLength']} characters")
    return str(kind) + (f" ({', '.join(limits)})" if limits else "")


def _param_row(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    default = schema.get("default")
    cells = [
        f"`{param['name']}`",
        param["in"],
        _schema_type(schema),
        "yes" if param.get("required") else "no" + (f" (default `{default}`)" if default is not None else ""),
        _prose(param.get("description") or schema.get("description")),
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _body_schema(op: dict[str, Any]) -> str | None:
    content = op.get("requestBody", {}).get("content", {})
    for media in content.values():
        ref = media.get("schema", {}).get("$ref")
        if ref:
            return _ref_name(ref)
    return None


def _answer_schema(answer: dict[str, Any]) -> str:
    for media in answer.get("content", {}).values():
        if "schema" in media:
            return _schema_type(media["schema"])
    return ""


def _schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_prose(schema["description"]), ""]
    if "enum" in schema:
        lines += ["One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".", ""]
        return lines
    required = set(schema.get("required", []))
    props = schema.get("properties", {})
    if props:
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, spec in props.items():
            default = spec.get("default")
            need = "yes" if field in required else "no" + (f" (default `{default}`)" if default is not None else "")
            cells = [f"`{field}`", _schema_type(spec), need, _prose(spec.get("description"))]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    return lines


def api_schema() -> dict[str, Any]:
    from streamq.services.api.app import create_app
    from streamq.shared.settings import Settings

    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


def render_api(schema: dict[str, Any] | None = None) -> str:
    schema = schema or api_schema()
    ops = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    common = set.intersection(*(set(op.get("responses", {})) for _, _, op in ops))
    first = ops[0][2]["responses"]
    lines = [
        f"streamq api {schema['info'].get('version', '')}: {len(ops)} operations. Every operation may also answer:",
        "",
        "| status | when |",
        "|---|---|",
    ]
    lines += [f"| {code} | {_cell(first[code].get('description', ''))} |" for code in sorted(common)]
    lines.append("")
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, method, op in ops:
        groups.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
    for tag, members in groups.items():
        lines += [f"## {tag.capitalize()}", ""]
        for path, method, op in members:
            lines += [f"### `{method.upper()} {path}`", ""]
            lines += [f"**{op.get('summary', '')}.** {_prose(op.get('description'))}".rstrip(), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                lines += [_param_row(p) for p in params] + [""]
            body = _body_schema(op)
            if body:
                lines += [f"Request body (JSON): [{body}](#{body.lower()}).", ""]
            answers = {c: a for c, a in op.get("responses", {}).items() if c not in common}
            lines += ["| answer | meaning | body |", "|---|---|---|"]
            for code in sorted(answers):
                answer = answers[code]
                lines.append(f"| {code} | {_cell(answer.get('description', ''))} | {_cell(_answer_schema(answer))} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, spec in schema.get("components", {}).get("schemas", {}).items():
        lines += _schema_section(name, spec)
    return "\n".join(lines) + "\n"


# --- the MkDocs hook ---


def render(kind: str, args: list[str]) -> str:
    if kind == "settings":
        return render_settings(args or None)
    if kind == "api":
        return render_api()
    raise ValueError(f"unknown generated block {kind!r}")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(lambda m: render(m.group(1), m.group(2).split()), markdown)
