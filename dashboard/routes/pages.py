"""The dashboard's page (``/``) and its icon (``/favicon.ico``, where browsers look for it); its scripts
and styles are served under ``/static``."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse

from streamq.dashboard.deps import ApiKeysDep

router = APIRouter()
STATIC = resources.files("streamq.dashboard") / "static"
NO_FRAMES = {"x-frame-options": "DENY", "content-security-policy": "frame-ancestors 'none'"}


@router.get("/", include_in_schema=False)
async def index(api_keys: ApiKeysDep) -> FileResponse:
    headers = {"cache-control": "no-cache", **(NO_FRAMES if api_keys else {})}
    return FileResponse(str(STATIC / "index.html"), headers=headers)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    """Open without a session, as ``/static`` is (``login.OPEN_PATHS``)."""
    return FileResponse(
        str(STATIC / "favicon.ico"), media_type="image/x-icon", headers={"cache-control": "max-age=86400"}
    )
