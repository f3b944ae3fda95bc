"""``/docs`` (Swagger UI) served by the api itself, so that it works without internet: FastAPI's own
page loads Swagger UI's script and stylesheet and its favicon from CDNs. Here the page is FastAPI's
(``get_swagger_ui_html``), pointing at Swagger UI's files from the ``swagger-ui-bundle-v2`` package
(Apache-2.0; Swagger UI's ``dist`` build, imported as ``swagger_ui_bundle``) under ``/docs/static``,
and ``/favicon.ico`` is Swagger UI's icon. The package has no ReDoc: ``/redoc`` is not served.

The guard treats these as any ``GET``: with API keys configured they need the ``read`` scope.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS = "/docs"
STATIC = "/docs/static"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
FAVICON = "/favicon.ico"
ICON = swagger_ui_path / "favicon-32x32.png"


def install(app: FastAPI) -> None:
    """The docs routes, on an app made with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off)."""
    app.mount(STATIC, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy's path prefix, as FastAPI's page
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
            swagger_favicon_url=root + FAVICON,
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def favicon(_request: Request) -> FileResponse:
        return FileResponse(str(ICON), media_type="image/png")

    app.add_route(DOCS, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT, oauth2_redirect, include_in_schema=False)
    app.add_route(FAVICON, favicon, include_in_schema=False)
