"""API keys and scopes on every route of the api's own OpenAPI schema."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest
from pydantic import ValidationError

from streamq.services.api.app import create_app
from streamq.shared.auth import parse_keys, verify
from streamq.shared.settings import Settings
from tests.security.conftest import KEYS, SECRETS, ApiFactory
from tests.support import ROOT

SUBMIT_BODIES = {"/api/tasks": {"type": "noop"}, "/api/tasks/batch": {"tasks": [{"type": "noop"}]}}


def every_operation(settings: Settings) -> list[tuple[str, str]]:
    schema = create_app(settings).openapi()
    ops = [(method.upper(), path) for path, item in schema["paths"].items() for method in item]
    return [*ops, ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs")]


def needed(method: str, path: str) -> str | None:
    if path in ("/api/health", "/api/live"):  # the probes: open
        return None
    if method == "POST" and path in SUBMIT_BODIES:
        return "submit"
    return "read" if method == "GET" else "admin"


async def call(client: httpx.AsyncClient, method: str, path: str, secret: str | None) -> httpx.Response:
    url = re.sub(r"\{[^}]+\}", "01NOSUCHTASK", path)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return await client.request(method, url, headers=headers, json=SUBMIT_BODIES.get(path))


async def test_every_route_needs_its_scope(make_api: ApiFactory, settings: Settings) -> None:
    operations = every_operation(settings)
    assert len(operations) >= 12
    async with make_api(api_keys=KEYS) as client:
        for method, path in operations:
            scope = needed(method, path)
            anonymous = await call(client, method, path, None)
            wrong = await call(client, method, path, "sq_not_a_key")
            if scope is None:
                assert anonymous.status_code == 200, path
                continue
            for response in (anonymous, wrong):
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert "API key is required" in response.json()["detail"]
            for name, secret in SECRETS.items():
                response = await call(client, method, path, secret)
                allowed = {"submitter": "submit", "reader": "read", "admin": "admin"}[name] == scope
                if allowed:
                    assert response.status_code not in (401, 403), (name, method, path, response.text)
                else:
                    assert response.status_code == 403, (name, method, path, response.text)
                    assert f"lacks the '{scope}' scope" in response.json()["detail"]


async def test_without_keys_everything_is_open(make_api: ApiFactory) -> None:
    async with make_api() as client:
        assert (await client.get("/api/stats")).status_code == 200
        assert (await client.post("/api/tasks", json={"type": "noop"})).status_code == 201


def test_key_command_prints_a_working_secret() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamq.shared.keys", "new", "ci-bot", "--scopes", "submit,read"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    secret = re.search(r"secret .*: (sq_\S+)", proc.stdout)[1]  # type: ignore[index]
    line = re.search(r"STREAMQ_API_KEYS: (\S+)", proc.stdout)[1]  # type: ignore[index]
    assert len(secret) >= 3 + 43 and secret not in line
    [key] = parse_keys(line)
    assert key.name == "ci-bot" and {s.value for s in key.scopes} == {"submit", "read"}
    assert verify([key], secret) == key and verify([key], secret + "x") is None


@pytest.mark.parametrize(
    "value",
    ["nocolons", "a:submit:abc", "a:write:" + "0" * 64, "a:read:" + "0" * 64 + " a:read:" + "1" * 64],
)
def test_bad_key_setting_is_named(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(api_keys=value, _env_file=None)  # type: ignore[call-arg]
    text = str(info.value)
    assert "api_keys" in text
