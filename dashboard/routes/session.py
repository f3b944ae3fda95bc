"""Logging in and out (``/login``, ``/logout``) and who is logged in (``/dash/session``); the guard
and the checks themselves are in ``streamq.dashboard.login``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from streamq.dashboard import login
from streamq.dashboard.deps import ApiKeysDep, BroadcasterDep, SessionsDep, ThrottleDep
from streamq.shared.auth import Scope

router = APIRouter()


@router.get("/login", include_in_schema=False)
async def login_page(api_keys: ApiKeysDep) -> Response:
    return login.login_page() if api_keys else RedirectResponse("/", status_code=303)


@router.post("/login", include_in_schema=False)
async def log_in(request: Request, api_keys: ApiKeysDep, sessions: SessionsDep, throttle: ThrottleDep) -> Response:
    if not api_keys:
        return JSONResponse({"detail": "no login: STREAMQ_API_KEYS is not set"}, status_code=404)
    return await login.login(request, api_keys, sessions, throttle)


@router.post("/logout", include_in_schema=False)
async def log_out(request: Request, sessions: SessionsDep, broadcaster: BroadcasterDep) -> Response:
    broadcaster.end_owner(request.cookies.get(login.COOKIE, ""))
    return await login.logout(request, sessions)


@router.get("/dash/session")
async def session(request: Request) -> dict[str, Any]:
    """Who is logged in and what the page may offer (``auth`` false: no keys, everything allowed)."""
    current = login.session_of(request)
    if current is None:
        return {"auth": False, "name": None, "scopes": [s.value for s in Scope], "csrf": None}
    return {"auth": True, "name": current.name, "scopes": sorted(s.value for s in current.scopes),
            "csrf": current.csrf}  # fmt: skip
