"""Typed settings, read from ``STREAMQ_*`` environment variables and ``.env``.

Settings are built in each service's ``main()`` through :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]
CommaFloats = Annotated[list[float], NoDecode]
# Svix's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (seconds)
DEFAULT_WEBHOOK_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
# settings that are URLs and may carry a password (shown with it replaced by *** in repr, str and dumps)
URL_SETTINGS = ("redis_url", "api_url", "prometheus_url")
NO_SECRET = SecretStr("")


class Settings(BaseSettings):
    """Every setting of every service; each service reads the ones it needs."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMQ_", env_file=".env", extra="ignore", validate_default=True, use_attribute_docstrings=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis (>= 7.0.5) to use; `rediss://` for TLS; `redis+cluster://h1:p1,h2:p2/` for Redis Cluster,
    `redis+sentinel://h1:p1,h2:p2/<master-name>[/db]` for Sentinel ([Scaling out](scaling-out.md))
    """
    redis_mode: str = Field(default="auto", pattern=r"^(auto|standalone|cluster|sentinel)$")
    """`auto` (from the URL's scheme), `standalone`, `cluster` (a `redis://` URL names one startup node) or
    `sentinel` (a `redis://` URL names a sentinel and `/<master-name>`)
    """
    redis_plain: bool = False
    """`true`: the Redis clients use redis-py as it comes, without streamq's overrides of its internals
    (`shared/redisfast.py`: hiredis packing, held connections, the quick pool, raw stream reads); the same
    behaviour with more client CPU per command, for a redis-py release those overrides do not work with
    """
    redis_sentinel_username: str = ""
    """Sentinel: the ACL user of the sentinels themselves, when their `sentinel.conf` asks for one (the URL's
    credentials are the Redis servers')
    """
    redis_sentinel_password: SecretStr = NO_SECRET
    """Sentinel: the sentinels' own password (`requirepass` in `sentinel.conf`)"""
    durable_submit: str = ""
    """api: `replicas:N[,timeout_ms]` (timeout 1000 by default): after each submit, `WAIT` until N replicas have
    the tasks, else answer 503; empty: off
    """
    key_prefix: str = Field(default="streamq", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    """first part of every key, so deployments can share a Redis"""
    queue: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    """the queue a task goes to when it names none; what a worker consumes when `STREAMQ_QUEUES` is empty"""
    queues: str = ""
    """workers: queues to consume with weights, e.g. `critical:6,default:3,bulk:1`; empty: `STREAMQ_QUEUE` alone"""
    queues_strict: bool = False
    """workers: `true` drains queues strictly in the order listed, weights ignored"""

    api_host: str = "127.0.0.1"
    """api bind address"""
    api_port: int = Field(default=8080, ge=0, le=65535)
    """api port"""
    memory_guard_ratio: float = Field(default=0.9, ge=0, le=1)
    """api: refuse new tasks (503, `"cause": "memory_guard"`) while Redis used memory / `maxmemory` is at least
    this; `0` turns the guard off
    """
    api_trusted_proxies: CommaList = Field(default_factory=list)
    """api: comma-separated addresses or networks (`10.0.0.5`, `10.0.0.0/8`) of your reverse proxies; only from
    them do `X-Forwarded-For` and `X-Forwarded-Proto` count (the client address of the per-address rate
    limit). Unset, they are ignored from everyone, loopback included
    """

    worker_concurrency: int = Field(default=10, ge=1, le=10_000)
    """tasks in flight per worker process (async handlers share its event loop; sync handlers run in threads, at
    most this many at once); scale by running more processes (compose runs a pool of 3)
    """
    handlers: CommaList = Field(default_factory=list)
    """comma-separated modules that define `@handler`s"""
    task_timeout_s: float = Field(default=300.0, gt=0)
    """default per-task run timeout (a task's `timeout_s` overrides it)"""
    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    """the longest any finished task is kept, whatever its queue's retention; a retention age cannot exceed it"""
    retention_completed_age_s: int = Field(default=24 * 3600, ge=0)
    """completed tasks of a queue that sets no retention: removed this long after finishing, or sooner beyond the
    count bound
    """
    retention_completed_count: int = Field(default=100_000, ge=0)
    """completed tasks of a queue that sets no retention: at most the newest this many"""
    retention_failed_age_s: int = Field(default=7 * 24 * 3600, ge=0)
    """the same for failed tasks: age bound"""
    retention_failed_count: int = Field(default=100_000, ge=0)
    """the same for failed tasks: count bound"""
    retention_cancelled_age_s: int = Field(default=24 * 3600, ge=0)
    """the same for cancelled tasks: age bound"""
    retention_cancelled_count: int = Field(default=100_000, ge=0)
    """the same for cancelled tasks: count bound"""
    retention_dead_letter_age_s: int = Field(default=7 * 24 * 3600, ge=0)
    """dead-letter entries: age bound (their failed tasks follow the failed bounds)"""
    retention_dead_letter_count: int = Field(default=10_000, ge=0)
    """dead-letter entries: count bound"""
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """on SIGTERM, how long running tasks may finish"""
    auto_migrate: bool = True
    """api: at start, run the schema migrations an older Redis layout needs (`false`: only `streamq migrate`
    does)
    """
    cancel_grace_s: float = Field(default=10.0, ge=0)
    """workers: how long a running handler has to stop once its cancel is requested before the task is recorded
    cancelled anyway
    """
    unhandled_timeout_s: float = Field(default=3600.0, gt=0)
    """workers: how long a task no worker has a handler for waits (given back) before it ends `failed`"""
    task_types: CommaList = Field(default_factory=list)
    """extra task types the api accepts (comma-separated)"""
    strict_types: bool = True
    """`false` accepts any task type, so tasks can be queued before their workers first start"""

    retry_base_s: float = Field(default=1.0, ge=0)
    """base of the retry back-off (a task's `retry_backoff_s` overrides it)"""
    retry_max_s: float = Field(default=600.0, ge=0)
    """cap of one retry back-off delay"""
    lease_s: float = Field(default=30.0, gt=0)
    """a running task's lease: renewed every third of it; an entry idle this long is reclaimed"""
    max_deliveries: int = Field(default=5, ge=1)
    """deliveries without finishing after which a task is dead-lettered as poison"""
    heartbeat_s: float = Field(default=5.0, gt=0)
    """how often a process refreshes its registration"""
    events_maxlen: int = Field(default=100_000, ge=100)
    """approximate length cap of each lifecycle events stream"""
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    """how long an idempotency key is remembered"""
    scheduler_batch: int = Field(default=500, ge=1, le=10_000)
    """due tasks moved per script call"""
    scheduler_max_wait_s: float = Field(default=1.0, gt=0, le=60)
    """longest the scheduler sleeps between checks (new schedules are seen within it)"""

    metrics_host: str = "127.0.0.1"
    """bind address of `/metrics`, `/livez` and `/readyz` for the worker, scheduler and notifier"""
    metrics_port: int = Field(default=0, ge=0, le=65535)
    """their port (0 picks a free one, logged at start and registered)"""
    liveness_stale_s: float = Field(default=30.0, ge=2)
    """`/livez` answers 503 once the service's event loop has not run for this long (the loop stamps every
    second)
    """
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    """log level"""
    log_format: str = Field(default="json", pattern=r"^(json|text)$")
    """`json` (one object per line) or `text`"""

    api_keys: str = Field(default="", repr=False)
    """`name:scope[,scope]:sha256-hex` entries, space- or `;`-separated; unset, no key is needed"""
    rate_limit: str = ""
    """e.g. `100/s burst 200` (per `s`, `m` or `h`); per API key, or per client address without keys"""

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: str) -> str:
        from streamq.shared.auth import parse_keys

        parse_keys(value)
        return value

    def retention_default(self, kind: str) -> tuple[int, int]:
        """(age_s, count) of ``kind`` (completed, failed, cancelled, dead_letter) for a queue that sets none."""
        return int(getattr(self, f"retention_{kind}_age_s")), int(getattr(self, f"retention_{kind}_count"))

    def queue_weights(self) -> dict[str, int]:
        """The queues a worker consumes with their weights, in the order listed."""
        from streamq.shared.queues import parse_weights

        return parse_weights(self.queues) if self.queues.strip() else {self.queue: 1}

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: str) -> str:
        from streamq.shared.queues import parse_weights

        if value.strip():
            parse_weights(value)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        parse_rate_limit(value)
        return value

    # --- webhooks and the notifier (docs: Webhooks and email) ---
    webhook_secret: SecretStr = NO_SECRET
    """`whsec_<base64>` signing secret(s), space-separated for rotation; the notifier needs one"""
    webhook_schedule: CommaFloats = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_SCHEDULE))
    """delays in seconds before each webhook attempt (the first is the delay before attempt 1)"""
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """the whole of one webhook attempt (connect, send, answer)"""
    webhook_lease_s: float = Field(default=30.0, gt=0)
    """how long a notifier owns an attempt it is sending; keep it above the timeout"""
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    """webhook attempts in flight per notifier process (shared by all its lanes)"""
    webhook_poll_s: float = Field(default=0.25, gt=0)
    """how often a notifier looks for due attempts"""
    webhook_allowed_hosts: CommaList = Field(default_factory=list)
    """comma-separated host names exempt from the SSRF address checks (webhooks and `http` tasks)"""
    allow_private_networks: bool = False
    """`true` lifts the SSRF address checks (development, tests); scheme and user-info checks stay"""
    notifier_claim_idle_s: float = Field(default=60.0, gt=0)
    """events pending this long on another notifier are taken over"""
    # --- the email task type ---
    smtp_host: str = "localhost"
    """SMTP server of the `email` task type"""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    """its port"""
    smtp_username: str = ""
    """SMTP login, when the server needs one"""
    smtp_password: SecretStr = NO_SECRET
    """SMTP password"""
    smtp_from: str = "streamq@localhost"
    """sender (`Name <address>` works)"""
    smtp_tls: str = Field(default="starttls", pattern=r"^(none|starttls|implicit)$")
    """`none`, `starttls` or `implicit` (SMTPS, usually port 465)"""
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    """SMTP timeout"""
    # --- observability and the dashboard ---
    advertise_host: str | None = Field(default=None, max_length=255)
    """host name other processes use to reach this one's `/metrics` (in containers, the service name; unset: the
    bind address, or the host name when bound to `0.0.0.0`)
    """
    dashboard_host: str = "127.0.0.1"
    """dashboard bind address"""
    dashboard_port: int = Field(default=8081, ge=0, le=65535)
    """dashboard port (0 picks a free one)"""
    api_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    """where the dashboard reaches the api; unset: `http://<STREAMQ_API_HOST>:<STREAMQ_API_PORT>` on this host
    (a wildcard host as 127.0.0.1)
    """
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://")
    """a Prometheus to chart from instead of the dashboard's own samples"""
    history_interval_s: float = Field(default=2.0, gt=0)
    """how often the dashboard samples"""
    history_retention_s: int = Field(default=24 * 3600, ge=60)
    """how long the dashboard's samples are kept"""
    # --- dashboard login (docs: Security) ---
    dashboard_api_key: SecretStr = NO_SECRET  # secret of a `read` key for the dashboard's own reads
    """secret of a `read` key for the dashboard's own reads (history, `/metrics` scraping)"""
    dashboard_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    """how long a dashboard login lasts"""
    dashboard_trusted_proxies: CommaList = Field(default_factory=list)
    """comma-separated addresses or networks of proxies whose `X-Forwarded-Proto` and `X-Forwarded-For` the
    dashboard believes
    """

    @field_validator("api_trusted_proxies", "dashboard_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_trusted_proxies", "dashboard_trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        from streamq.shared.forwarded import parse_trusted_proxies

        return parse_trusted_proxies(value)

    @field_validator("handlers", "task_types", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower().rstrip(".") for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not value or any(v < 0 for v in value):
            raise ValueError("must be a comma-separated list of delays in seconds (>= 0), e.g. 0,5,300")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        from streamq.shared.webhooks import parse_secrets

        parse_secrets(value.get_secret_value())  # raises ValueError naming the problem (never the secret)
        return value

    @model_validator(mode="after")
    def _default_api_url(self) -> Settings:
        """Without ``STREAMQ_API_URL`` the dashboard reads the api where ``STREAMQ_API_HOST`` and
        ``STREAMQ_API_PORT`` put it (a wildcard host as 127.0.0.1; port 0, picked at start, keeps 8080)."""
        if "api_url" not in self.model_fields_set and self.api_port:
            host = "127.0.0.1" if self.api_host in ("", "0.0.0.0", "::") else self.api_host
            host = f"[{host}]" if ":" in host else host
            self.__dict__["api_url"] = f"http://{host}:{self.api_port}"  # not marked as set: still the default
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """pydantic's, with URL passwords masked (secrets are ``SecretStr``, masked by pydantic)."""
        for name, value in super().__repr_args__():
            yield name, (_redact(value) if name in URL_SETTINGS and isinstance(value, str) else value)

    @field_serializer(*URL_SETTINGS)
    def _dump_url(self, value: str | None) -> str | None:
        return _redact(value) if value is not None else None

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        from streamq.shared.redis import parse_topology

        parse_topology(value)  # raises ValueError naming the problem
        return value

    @field_validator("redis_mode", mode="after")
    @classmethod
    def _check_redis_mode(cls, value: str, info: ValidationInfo) -> str:
        from streamq.shared.redis import parse_topology

        url = info.data.get("redis_url")
        if url is not None:  # (a bad URL is reported on its own)
            parse_topology(url, value)
        return value

    @field_validator("durable_submit")
    @classmethod
    def _check_durable_submit(cls, value: str) -> str:
        parse_durable_submit(value)
        return value

    def durable(self) -> tuple[int, int] | None:
        """``STREAMQ_DURABLE_SUBMIT`` as (replicas, timeout in ms), or None when off."""
        return parse_durable_submit(self.durable_submit)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def _redact(url: str) -> str:
    from streamq.shared.redis import redact

    return redact(url)


_DURABLE = re.compile(r"^\s*replicas\s*:\s*(\d+)\s*(?:,\s*(\d+)\s*)?$")
DURABLE_TIMEOUT_MS = 1000


def parse_durable_submit(value: str) -> tuple[int, int] | None:
    """``"replicas:1,500"`` -> (1 replica, 500 ms); ``"replicas:1"`` -> (1, 1000); ``""`` -> None (off)."""
    if not value.strip():
        return None
    match = _DURABLE.match(value)
    if match is None:
        raise ValueError("must look like 'replicas:N' or 'replicas:N,timeout_ms' (e.g. replicas:1,1000)")
    replicas = int(match[1])
    timeout_ms = int(match[2]) if match[2] else DURABLE_TIMEOUT_MS
    if replicas < 1 or timeout_ms < 1:
        raise ValueError("the replica count and the timeout must be at least 1 (0 would wait forever)")
    return replicas, timeout_ms


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)(?:\s+burst\s+(\d+))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate_limit(value: str) -> tuple[float, int] | None:
    """``"100/s burst 200"`` -> (100.0 tokens per second, burst 200); ``""`` -> None (no limit).
    Without ``burst`` the bucket holds one second's worth (at least 1)."""
    if not value.strip():
        return None
    match = _RATE.match(value)
    if match is None:
        raise ValueError("must look like '100/s burst 200' (per s, m or h; burst optional)")
    rate = float(match[1]) / _PER[match[2]]
    if rate <= 0:
        raise ValueError("the rate must be greater than 0")
    burst = int(match[3]) if match[3] else max(1, int(rate))
    if burst < 1:
        raise ValueError("the burst must be at least 1")
    return rate, burst


def describe_error(error: ValidationError) -> str:
    """One line naming each bad setting as its environment variable."""
    parts = []
    for item in error.errors():
        name = "STREAMQ_" + "_".join(str(p) for p in item["loc"][:1]).upper()
        parts.append(f"{name}: {item['msg']}")
    return "invalid setting " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or exit with one clear line naming the bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        print(f"streamq: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None
