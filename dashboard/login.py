"""The dashboard's login when ``STREAMQ_API_KEYS`` is set: a guard in front of every route, the login
and logout endpoints, and the cross-site request checks.

Without a session every route but ``/login``, ``/healthz``, ``/favicon.ico`` and ``/static/*`` answers
401 (JSON for ``/api/*``, ``/dash/*`` and ``/metrics``; a redirect to ``/login`` for the page).
``/metrics`` also takes a bearer key with the ``read`` scope (for scrapers). With a session, the
dashboard's own data routes (every ``/dash/*`` but ``/dash/session``, and ``/metrics``) need the
``read`` scope, as the api's reads do (403 naming it); ``/api/*`` is passed to the api with the
session's key, which checks it there.

A state-changing request (anything but GET/HEAD/OPTIONS) must come from the dashboard's own origin
(``Sec-Fetch-Site`` and ``Origin``, when the browser sends them) and, with a session, carry the
session's CSRF token in ``X-CSRF-Token``; else 403.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from streamq.dashboard.sessions import Session, SessionStore
from streamq.dashboard.throttle import LoginThrottle
from streamq.shared.auth import ApiKey, verify
from streamq.shared.auth import Scope as KeyScope

COOKIE = "streamq_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_PREFIXES = ("/api/", "/dash/", "/metrics")
OPEN_PATHS = frozenset({"/login", "/healthz", "/favicon.ico"})
MAX_LOGIN_BODY = 4096
LOGIN_PAGE = resources.files("streamq.dashboard") / "static" / "login.html"


def is_https(request: Request) -> bool:
    """The request scheme, as the server settled it: ``X-Forwarded-Proto`` counts only from an address
    in ``STREAMQ_DASHBOARD_TRUSTED_PROXIES`` (``streamq.shared.forwarded``, applied where uvicorn is started)."""
    return request.url.scheme == "https"


def own_origin(request: Request) -> str:
    scheme = "https" if is_https(request) else "http"
    return f"{scheme}://{request.headers.get('host', '')}"


def cross_site(request: Request) -> str | None:
    """Why this request is not from the dashboard's own origin, or None."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused: Sec-Fetch-Site is {site!r}, must be 'same-origin'"
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        return f"cross-site request refused: Origin {origin!r} is not this dashboard's origin"
    return None


def login_page(error: str | None = None, status_code: int = 200, retry_after_s: int | None = None) -> HTMLResponse:
    text = LOGIN_PAGE.read_text()
    notice = f'<p class="notice" role="alert" data-testid="login-error">{html.escape(error)}</p>' if error else ""
    headers = {"cache-control": "no-store", "x-frame-options": "DENY"}
    if retry_after_s is not None:
        headers["retry-after"] = str(retry_after_s)
    return HTMLResponse(text.replace("<!--error-->", notice), status_code=status_code, headers=headers)


def required_scope(path: str) -> KeyScope | None:
    """The scope one of the dashboard's own routes needs: task events, chart history, services, config
    and metrics are what the api serves only to ``read`` keys. ``/dash/session`` is open to every
    session (the page learns its scopes there); the page itself and ``/api/*`` need none here."""
    if path == "/metrics" or (path.startswith("/dash/") and path != "/dash/session"):
        return KeyScope.READ
    return None


def bearer_key(request: Request, keys: list[ApiKey]) -> ApiKey | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return verify(keys, token.strip()) if scheme.lower() == "bearer" and token.strip() else None


class LoginGuard:
    """Pure ASGI (server-sent events stream through untouched)."""

    def __init__(self, app: ASGIApp, *, keys: list[ApiKey], store: Callable[[], SessionStore]) -> None:
        self.app = app
        self.keys = keys
        self.store = store  # made in the lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path, method = scope["path"], scope["method"]
        refusal = None if method in SAFE_METHODS else cross_site(request)
        if refusal is not None:
            await JSONResponse({"detail": refusal}, status_code=403)(scope, receive, send)
            return
        if path in OPEN_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        session = await self.store().get(request.cookies.get(COOKIE, ""))
        key = verify(self.keys, session.secret) if session is not None else None
        if session is None or key is None:  # no session, or its key was removed from STREAMQ_API_KEYS
            await self._no_session(request, scope, receive, send)
            return
        session = replace(session, name=key.name, scopes=key.scopes)  # the key's scopes as configured now
        needed = required_scope(path)
        if needed is not None and needed not in key.scopes:
            detail = f"the key {key.name!r} lacks the {needed.value!r} scope for {method} {path}"
            await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
            return
        if method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()
        ):
            detail = f"missing or wrong {CSRF_HEADER} header: state changes need this session's CSRF token"
            await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)

    async def _no_session(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/metrics":
            key = bearer_key(request, self.keys)
            if key is not None and KeyScope.READ in key.scopes:
                await self.app(scope, receive, send)
                return
        response: Response
        if path.startswith(JSON_PREFIXES):
            response = JSONResponse({"detail": "log in to the dashboard first (POST /login with an API key)"}, 401)
        else:
            response = RedirectResponse("/login", status_code=303)
        await response(scope, receive, send)


async def read_login_key(request: Request) -> str:
    """The ``key`` field of the login form (urlencoded), at most ``MAX_LOGIN_BODY`` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            return ""
    values = parse_qs(body.decode("utf-8", "replace")).get("key", [""])
    return values[0].strip()


async def login(request: Request, keys: list[ApiKey], store: SessionStore, throttle: LoginThrottle) -> Response:
    secret = await read_login_key(request)
    client = request.client.host if request.client else "unknown"
    wait_s = await throttle.attempt(client, secret)
    if wait_s is not None:  # refused before the key is checked: a right guess would not tell
        error = f"Too many failed logins from this address or with this key; try again in {wait_s} s."
        return login_page(error, status_code=429, retry_after_s=wait_s)
    key = verify(keys, secret) if secret else None
    if key is None:
        return login_page("That API key is not valid.", status_code=401)
    await throttle.succeeded(client, secret)
    await store.delete(request.cookies.get(COOKIE, ""))  # a new login replaces the session it had
    session_id, _session = await store.create(key, secret)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE, session_id, max_age=store.ttl_s, path="/", httponly=True, samesite="strict",
        secure=is_https(request),
    )  # fmt: skip
    return response


async def logout(request: Request, store: SessionStore) -> Response:
    await store.delete(request.cookies.get(COOKIE, ""))
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))
    return response


def session_of(request: Request) -> Session | None:
    session: Session | None = getattr(request.state, "session", None)
    return session
