"""Typed settings, read from ``STREAMQ_*`` environment variables and ``.env``.

Settings are built in each service's ``main()`` through :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_serializer, field_validator
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

    model_config = SettingsConfigDict(env_prefix="STREAMQ_", env_file=".env", extra="ignore", validate_default=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # auto = from the URL scheme (redis+cluster://, redis+sentinel://); README: Scaling out
    redis_mode: str = Field(default="auto", pattern=r"^(auto|standalone|cluster|sentinel)$")
    redis_plain: bool = Field(
        default=False,
        description="true: the Redis clients use redis-py as it comes, without streamq's overrides of its "
        "internals (hiredis packing, held connections, the quick pool, raw stream reads: shared/redisfast.py); "
        "same behaviour, more client CPU per command. For a redis-py release those overrides do not work with.",
    )
    # Sentinel: the sentinels' own credentials (their `requirepass` / ACL user); the URL's are the servers'
    redis_sentinel_username: str = ""
    redis_sentinel_password: SecretStr = NO_SECRET
    # "replicas:N[,timeout_ms]": after each submit, WAIT for N replicas (503 if fewer); empty = off
    durable_submit: str = ""
    key_prefix: str = Field(default="streamq", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    queue: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    # workers: the queues to consume with weights ("critical:6,default:3,bulk:1"); empty = `queue` alone
    queues: str = ""
    queues_strict: bool = False  # true: always drain the first queue listed before the next (weights ignored)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # api: refuse new tasks (503) while Redis used memory / maxmemory is at least this; 0 = off
    memory_guard_ratio: float = Field(default=0.9, ge=0, le=1)
    api_trusted_proxies: CommaList = Field(default_factory=list)  # peers whose X-Forwarded-For/-Proto count

    worker_concurrency: int = Field(default=10, ge=1, le=10_000)
    handlers: CommaList = Field(default_factory=list)
    task_timeout_s: float = Field(default=300.0, gt=0)
    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)  # the longest a finished task is kept
    # retention defaults per queue (README: Retention): age (s after finishing) and count (newest kept)
    retention_completed_age_s: int = Field(default=24 * 3600, ge=0)
    retention_completed_count: int = Field(default=100_000, ge=0)
    retention_failed_age_s: int = Field(default=7 * 24 * 3600, ge=0)
    retention_failed_count: int = Field(default=100_000, ge=0)
    retention_cancelled_age_s: int = Field(default=24 * 3600, ge=0)
    retention_cancelled_count: int = Field(default=100_000, ge=0)
    retention_dead_letter_age_s: int = Field(default=7 * 24 * 3600, ge=0)
    retention_dead_letter_count: int = Field(default=10_000, ge=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    auto_migrate: bool = True  # the api runs the schema migrations an older Redis layout needs at start
    cancel_grace_s: float = Field(default=10.0, ge=0)  # how long a handler has to stop once its cancel is requested
    unhandled_timeout_s: float = Field(default=3600.0, gt=0)  # longest a task waits for a worker with its handler
    task_types: CommaList = Field(default_factory=list)
    strict_types: bool = True

    retry_base_s: float = Field(default=1.0, ge=0)
    retry_max_s: float = Field(default=600.0, ge=0)
    lease_s: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    heartbeat_s: float = Field(default=5.0, gt=0)
    events_maxlen: int = Field(default=100_000, ge=100)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    scheduler_batch: int = Field(default=500, ge=1, le=10_000)  # tasks promoted per script call
    scheduler_max_wait_s: float = Field(default=1.0, gt=0, le=60)  # longest scheduler sleep between checks

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    liveness_stale_s: float = Field(default=30.0, ge=2)  # /livez turns 503 when the loop is this late (pulse: 1 s)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: str = Field(default="json", pattern=r"^(json|text)$")

    api_keys: str = Field(default="", repr=False)
    rate_limit: str = ""

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

    # --- webhooks and the notifier (README: Webhooks and email) ---
    webhook_secret: SecretStr = NO_SECRET  # "whsec_<base64>", several space-separated for rotation
    webhook_schedule: CommaFloats = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_SCHEDULE))
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_lease_s: float = Field(default=30.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    webhook_poll_s: float = Field(default=0.25, gt=0)
    webhook_allowed_hosts: CommaList = Field(default_factory=list)
    allow_private_networks: bool = False
    notifier_claim_idle_s: float = Field(default=60.0, gt=0)
    # --- the email task type ---
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = NO_SECRET
    smtp_from: str = "streamq@localhost"
    smtp_tls: str = Field(default="starttls", pattern=r"^(none|starttls|implicit)$")
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    # observability and the dashboard
    advertise_host: str | None = Field(default=None, max_length=255)  # host others use to reach this process
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8081, ge=0, le=65535)
    api_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://")
    history_interval_s: float = Field(default=2.0, gt=0)
    history_retention_s: int = Field(default=24 * 3600, ge=60)
    # dashboard login (README: Security, Dashboard login)
    dashboard_api_key: SecretStr = NO_SECRET  # secret of a `read` key for the dashboard's own reads
    dashboard_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    dashboard_trusted_proxies: CommaList = Field(default_factory=list)  # addresses whose X-Forwarded-Proto counts

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
