"""Dependencies as ``Annotated`` aliases; everything lives on ``app.state`` (settings and keys set in
``create_app``, the clients and loops built in the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from streamq.dashboard import login
from streamq.dashboard.events import Broadcaster
from streamq.dashboard.sampler import Sampler
from streamq.dashboard.sessions import SessionStore
from streamq.dashboard.throttle import LoginThrottle
from streamq.dashboard.upstream import Upstream
from streamq.shared.auth import ApiKey
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_keys(request: Request) -> KeySchema:
    return request.app.state.keys  # type: ignore[no-any-return]


async def get_api_keys(request: Request) -> list[ApiKey]:
    """``STREAMQ_API_KEYS`` parsed; empty: no login, everything allowed."""
    return request.app.state.api_keys  # type: ignore[no-any-return]


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_upstream(request: Request) -> Upstream:
    return request.app.state.upstream  # type: ignore[no-any-return]


async def get_sessions(request: Request) -> SessionStore:
    return request.app.state.sessions  # type: ignore[no-any-return]


async def get_throttle(request: Request) -> LoginThrottle:
    return request.app.state.throttle  # type: ignore[no-any-return]


async def get_broadcaster(request: Request) -> Broadcaster:
    return request.app.state.broadcaster  # type: ignore[no-any-return]


async def get_sampler(request: Request) -> Sampler:
    return request.app.state.sampler  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
KeysDep = Annotated[KeySchema, Depends(get_keys)]
ApiKeysDep = Annotated[list[ApiKey], Depends(get_api_keys)]
RedisDep = Annotated[Redis, Depends(get_redis)]
UpstreamDep = Annotated[Upstream, Depends(get_upstream)]
SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]
BroadcasterDep = Annotated[Broadcaster, Depends(get_broadcaster)]
SamplerDep = Annotated[Sampler, Depends(get_sampler)]


async def get_bearer(request: Request, api_keys: ApiKeysDep) -> dict[str, str]:
    """The logged-in key for the api; with keys configured and no session (cannot happen behind the
    guard) an empty bearer, so the service key is never used on a user's behalf."""
    current = login.session_of(request)
    if current is not None:
        return {"authorization": f"Bearer {current.secret}"}
    return {"authorization": ""} if api_keys else {}


BearerDep = Annotated[dict[str, str], Depends(get_bearer)]
