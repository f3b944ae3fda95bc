"""Typed settings, read from ``STREAMQ_*`` environment variables and ``.env``.

Settings are built in each service's ``main()`` through :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import sys
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every setting of every service; each service reads the ones it needs."""

    model_config = SettingsConfigDict(env_prefix="STREAMQ_", env_file=".env", extra="ignore", validate_default=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="streamq", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    queue: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)

    worker_concurrency: int = Field(default=3, ge=1, le=10_000)
    handlers: CommaList = Field(default_factory=list)
    task_timeout_s: float = Field(default=300.0, gt=0)
    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
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
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: str = Field(default="json", pattern=r"^(json|text)$")

    @field_validator("handlers", "task_types", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


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
