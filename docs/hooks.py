"""MkDocs hook: pages generated from the code at build time, never copied by hand.

A page holds a marker and the hook replaces it with Markdown:

- ``<!-- generated: api -->``: every path and method of the api's OpenAPI schema
  (``create_app(Settings(_env_file=None)).openapi()``): summary, description, parameters, request body,
  answers, then every schema the answers and bodies name.
- ``<!-- generated: settings -->``: every field of ``Settings``, as ``STREAMQ_<NAME>`` with type, default and
  description; ``<!-- generated: settings name1 name2 ... -->`` renders only those fields (by field name).

A marker naming an unknown field, or a setting without any description, fails the build.
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

# Descriptions of the settings whose model field has none (Field(description=...) wins when present).
SETTING_DESCRIPTIONS: dict[str, str] = {
    "redis_url": "Redis (>= 7.0.5) to use; `rediss://` for TLS; `redis+cluster://h1:p1,h2:p2/` for Redis Cluster, "
    "`redis+sentinel://h1:p1,h2:p2/<master-name>[/db]` for Sentinel ([Scaling out](scaling-out.md))",
    "redis_mode": "`auto` (from the URL's scheme), `standalone`, `cluster` (a `redis://` URL names one startup node) "
    "or `sentinel` (a `redis://` URL names a sentinel and `/<master-name>`)",
    "redis_sentinel_username": "Sentinel: the ACL user of the sentinels themselves, when their `sentinel.conf` asks "
    "for one (the URL's credentials are the Redis servers')",
    "redis_sentinel_password": "Sentinel: the sentinels' own password (`requirepass` in `sentinel.conf`)",
    "durable_submit": "api: `replicas:N[,timeout_ms]` (timeout 1000 by default): after each submit, `WAIT` until N "
    "replicas have the tasks, else answer 503; empty: off",
    "key_prefix": "first part of every key, so deployments can share a Redis",
    "queue": "the queue a task goes to when it names none; what a worker consumes when `STREAMQ_QUEUES` is empty",
    "queues": "workers: queues to consume with weights, e.g. `critical:6,default:3,bulk:1`; empty: `STREAMQ_QUEUE` "
    "alone",
    "queues_strict": "workers: `true` drains queues strictly in the order listed, weights ignored",
    "api_host": "api bind address",
    "api_port": "api port",
    "memory_guard_ratio": 'api: refuse new tasks (503, `"cause": "memory_guard"`) while Redis used memory / '
    "`maxmemory` is at least this; `0` turns the guard off",
    "api_trusted_proxies": "api: comma-separated addresses or networks (`10.0.0.5`, `10.0.0.0/8`) of your reverse "
    "proxies; only from them do `X-Forwarded-For` and `X-Forwarded-Proto` count (the client address of the "
    "per-address rate limit). Unset, they are ignored from everyone, loopback included",
    "worker_concurrency": "tasks in flight per worker process (async handlers share its event loop; sync handlers "
    "run in threads, at most this many at once); scale by running more processes (compose runs a pool of 3)",
    "handlers": "comma-separated modules that define `@handler`s",
    "task_timeout_s": "default per-task run timeout (a task's `timeout_s` overrides it)",
    "result_ttl_s": "the longest any finished task is kept, whatever its queue's retention; a retention age cannot "
    "exceed it",
    "retention_completed_age_s": "completed tasks of a queue that sets no retention: removed this long after "
    "finishing, or sooner beyond the count bound",
    "retention_completed_count": "completed tasks of a queue that sets no retention: at most the newest this many",
    "retention_failed_age_s": "the same for failed tasks: age bound",
    "retention_failed_count": "the same for failed tasks: count bound",
    "retention_cancelled_age_s": "the same for cancelled tasks: age bound",
    "retention_cancelled_count": "the same for cancelled tasks: count bound",
    "retention_dead_letter_age_s": "dead-letter entries: age bound (their failed tasks follow the failed bounds)",
    "retention_dead_letter_count": "dead-letter entries: count bound",
    "shutdown_grace_s": "on SIGTERM, how long running tasks may finish",
    "auto_migrate": "api: at start, run the schema migrations an older Redis layout needs (`false`: only "
    "`streamq migrate` does)",
    "cancel_grace_s": "workers: how long a running handler has to stop once its cancel is requested before the "
    "task is recorded cancelled anyway",
    "unhandled_timeout_s": "workers: how long a task no worker has a handler for waits (given back) before it ends "
    "`failed`",
    "task_types": "extra task types the api accepts (comma-separated)",
    "strict_types": "`false` accepts any task type, so tasks can be queued before their workers first start",
    "retry_base_s": "base of the retry back-off (a task's `retry_backoff_s` overrides it)",
    "retry_max_s": "cap of one retry back-off delay",
    "lease_s": "a running task's lease: renewed every third of it; an entry idle this long is reclaimed",
    "max_deliveries": "deliveries without finishing after which a task is dead-lettered as poison",
    "heartbeat_s": "how often a process refreshes its registration",
    "events_maxlen": "approximate length cap of each lifecycle events stream",
    "idempotency_ttl_s": "how long an idempotency key is remembered",
    "scheduler_batch": "due tasks moved per script call",
    "scheduler_max_wait_s": "longest the scheduler sleeps between checks (new schedules are seen within it)",
    "metrics_host": "bind address of `/metrics`, `/livez` and `/readyz` for the worker, scheduler and notifier",
    "metrics_port": "their port (0 picks a free one, logged at start and registered)",
    "liveness_stale_s": "`/livez` answers 503 once the service's event loop has not run for this long (the loop "
    "stamps every second)",
    "log_level": "log level",
    "log_format": "`json` (one object per line) or `text`",
    "api_keys": "`name:scope[,scope]:sha256-hex` entries, space- or `;`-separated; unset, no key is needed",
    "rate_limit": "e.g. `100/s burst 200` (per `s`, `m` or `h`); per API key, or per client address without keys",
    "webhook_secret": "`whsec_<base64>` signing secret(s), space-separated for rotation; the notifier needs one",
    "webhook_schedule": "delays in seconds before each webhook attempt (the first is the delay before attempt 1)",
    "webhook_timeout_s": "the whole of one webhook attempt (connect, send, answer)",
    "webhook_lease_s": "how long a notifier owns an attempt it is sending; keep it above the timeout",
    "webhook_concurrency": "webhook attempts in flight per notifier process (shared by all its lanes)",
    "webhook_poll_s": "how often a notifier looks for due attempts",
    "webhook_allowed_hosts": "comma-separated host names exempt from the SSRF address checks (webhooks and `http` "
    "tasks)",
    "allow_private_networks": "`true` lifts the SSRF address checks (development, tests); scheme and user-info "
    "checks stay",
    "notifier_claim_idle_s": "events pending this long on another notifier are taken over",
    "smtp_host": "SMTP server of the `email` task type",
    "smtp_port": "its port",
    "smtp_username": "SMTP login, when the server needs one",
    "smtp_password": "SMTP password",
    "smtp_from": "sender (`Name <address>` works)",
    "smtp_tls": "`none`, `starttls` or `implicit` (SMTPS, usually port 465)",
    "smtp_timeout_s": "SMTP timeout",
    "advertise_host": "host name other processes use to reach this one's `/metrics` (in containers, the service "
    "name; unset: the bind address, or the host name when bound to `0.0.0.0`)",
    "dashboard_host": "dashboard bind address",
    "dashboard_port": "dashboard port (0 picks a free one)",
    "api_url": "where the dashboard reaches the api",
    "prometheus_url": "a Prometheus to chart from instead of the dashboard's own samples",
    "history_interval_s": "how often the dashboard samples",
    "history_retention_s": "how long the dashboard's samples are kept",
    "dashboard_api_key": "secret of a `read` key for the dashboard's own reads (history, `/metrics` scraping)",
    "dashboard_session_ttl_s": "how long a dashboard login lasts",
    "dashboard_trusted_proxies": "comma-separated addresses or networks of proxies whose `X-Forwarded-Proto` and "
    "`X-Forwarded-For` the dashboard believes",
}


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
    description = info.description or SETTING_DESCRIPTIONS.get(name)
    if not description:
        raise ValueError(f"setting {name} has no description (add Field(description=...) or one in docs/hooks.py)")
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
