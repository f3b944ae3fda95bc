"""Secret settings: never shown by the settings' repr, str or dump, nor logged by a service started
with every one of them set, at debug level."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from streamq.shared.auth import config_line
from streamq.shared.settings import Settings
from streamq.testing import RedisServer, Stack
from tests.integration.receivers import Receiver, serving, wait_until

REDIS_PASSWORD = "redis-Pa55-c0ffee"
SENTINEL_PASSWORD = "sentinel-Pa55-beef"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-secret-key-0123456789abcd").decode()
SMTP_PASSWORD = "smtp-Pa55-f00d"
DASHBOARD_KEY = "sq_dashboard-read-key-5ecret"
ADMIN_KEY = "sq_admin-key-5ecret"
URL_PASSWORD = "url-Pa55-d00d"  # in the api and Prometheus URLs' user info
SECRETS = (REDIS_PASSWORD, SENTINEL_PASSWORD, WEBHOOK_SECRET, SMTP_PASSWORD, DASHBOARD_KEY, ADMIN_KEY, URL_PASSWORD)
API_KEYS = " ".join(
    [config_line("dash", ["read"], DASHBOARD_KEY), config_line("admin", ["submit", "read", "admin"], ADMIN_KEY)]
)


def leaked(text: str) -> list[str]:
    """The secrets (or the webhook key's base64) found in ``text``."""
    found = [s for s in SECRETS if s in text]
    return found + (["webhook key"] if WEBHOOK_SECRET.removeprefix("whsec_") in text else [])


@pytest.mark.parametrize(
    "redis_url",
    [
        f"redis://streamq:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        f"redis://127.0.0.1:6379/0?password={REDIS_PASSWORD}",
        f"redis+sentinel://:{REDIS_PASSWORD}@127.0.0.1:26379,127.0.0.1:26380/mymaster",
    ],
)
def test_settings_never_show_a_secret(redis_url: str) -> None:
    settings = Settings(
        redis_url=redis_url,
        redis_sentinel_password=SENTINEL_PASSWORD,
        webhook_secret=WEBHOOK_SECRET,
        smtp_password=SMTP_PASSWORD,
        dashboard_api_key=DASHBOARD_KEY,
        api_url=f"http://dash:{URL_PASSWORD}@api.internal:8080",
        prometheus_url=f"https://prom:{URL_PASSWORD}@prometheus.internal",
        _env_file=None,  # type: ignore[call-arg]
    )
    for shown in (repr(settings), str(settings), f"{settings}", settings.model_dump_json(),
                  json.dumps(settings.model_dump(mode="json")), str(settings.model_dump())):  # fmt: skip
        assert leaked(shown) == [], shown
    assert "***" in repr(settings) and "127.0.0.1" in repr(settings)  # masked, not dropped
    # the services still get the real values
    assert settings.redis_url == redis_url
    assert settings.webhook_secret.get_secret_value() == WEBHOOK_SECRET
    assert settings.smtp_password.get_secret_value() == SMTP_PASSWORD
    assert settings.redis_sentinel_password.get_secret_value() == SENTINEL_PASSWORD
    assert settings.dashboard_api_key.get_secret_value() == DASHBOARD_KEY


def test_a_bad_secret_setting_is_named_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    from streamq.shared.settings import load_settings

    with pytest.raises(SystemExit):
        load_settings(webhook_secret=WEBHOOK_SECRET[:-8] + "!!", _env_file=None)
    err = capsys.readouterr().err
    assert "STREAMQ_WEBHOOK_SECRET" in err and WEBHOOK_SECRET[6:-8] not in err


@pytest.mark.e2e
async def test_services_started_with_every_secret_log_none_at_debug(tmp_path: Path) -> None:
    redis = RedisServer("--requirepass", REDIS_PASSWORD)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0"
    stack = Stack(
        redis, tmp_path, STREAMQ_REDIS_URL=url, STREAMQ_LOG_LEVEL="DEBUG", STREAMQ_API_KEYS=API_KEYS,
        STREAMQ_DASHBOARD_API_KEY=DASHBOARD_KEY, STREAMQ_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STREAMQ_SMTP_PASSWORD=SMTP_PASSWORD, STREAMQ_REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        STREAMQ_ALLOW_PRIVATE_NETWORKS="true", STREAMQ_WEBHOOK_POLL_S="0.05", STREAMQ_HISTORY_INTERVAL_S="0.5",
    )  # fmt: skip
    stack.env["STREAMQ_API_URL"] = f"http://dash:{URL_PASSWORD}@127.0.0.1:{stack.api_port}"  # the dashboard's
    receiver = Receiver()
    auth = {"authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with serving(receiver), httpx.AsyncClient(base_url=stack.api_url, headers=auth, timeout=10) as api:
            stack.start("api", "worker", "notifier", "scheduler", "dashboard")
            created = await api.post("/api/tasks", json={"type": "echo", "payload": 1, "webhook": receiver.url()})
            assert created.status_code == 201, created.text
            await wait_until(lambda: receiver.at("/hook"), 30, "the signed webhook")  # the notifier used its secret
            await wait_until(lambda: "dashboard starting" in stack.services["dashboard"].log(), 15, "dashboard log")
            bodies = [(await api.get(path)).text for path in ("/api/services", "/api/health", "/api/workers")]
            bodies.append((await api.get(f"{stack.dashboard_url}/dash/config")).text)
            assert all(leaked(body) == [] for body in bodies), bodies
    finally:
        logs = {name: service for name, service in stack.services.items()}
        stack.close()
        redis.stop()
    assert set(logs) == {"api", "worker", "notifier", "scheduler", "dashboard"}
    for name, service in logs.items():
        text = service.log()
        assert text.strip(), f"{name} logged nothing"
        assert leaked(text) == [], f"{name} logged {leaked(text)}:\n{text}"
    assert "***" in logs["dashboard"].log()  # the api URL it logs, password masked
    assert any('"level":"debug"' in service.log() for service in logs.values())  # debug was on
