from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest

from streamq.services.api.app import create_app
from streamq.shared.auth import config_line
from streamq.shared.settings import Settings

SECRETS = {"submitter": "sq_submit_secret", "reader": "sq_read_secret", "admin": "sq_admin_secret"}
SCOPES = {"submitter": ["submit"], "reader": ["read"], "admin": ["admin"]}
KEYS = " ".join(config_line(name, SCOPES[name], secret) for name, secret in SECRETS.items())

ApiFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_api(settings: Settings) -> ApiFactory:
    @asynccontextmanager
    async def make(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update=overrides))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        async with app.router.lifespan_context(app), client:
            yield client

    return make
