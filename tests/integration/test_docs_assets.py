"""``/docs`` works without internet: the page names only the api's own URLs, and the api serves Swagger
UI's files (services/api/docs.py) and a favicon with their content types."""

from __future__ import annotations

import re

import httpx
import pytest

from streamq.services.api.app import create_app
from streamq.shared.settings import Settings

URLS = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?'([^']+)'|window\.location\.origin \+ '([^']+)'""")
ASSETS = {
    "swagger-ui-bundle.js": ("text/javascript", "application/javascript"),
    "swagger-ui.css": ("text/css",),
}


def _urls(html: str) -> list[str]:
    return [next(group for group in match if group) for match in URLS.findall(html)]


async def test_docs_page_and_its_assets_come_from_the_api(api: httpx.AsyncClient) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert not re.search(r"(?:https?:)?//[a-z0-9]", page.text), "no URL of another host"
    urls = _urls(page.text)
    expected = {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css", "/favicon.ico"}
    assert expected | {"/openapi.json", "/docs/oauth2-redirect"} == set(urls), urls
    for url in urls:
        r = await api.get(url)
        assert r.status_code == 200, (url, r.status_code)
    for name, types in ASSETS.items():
        r = await api.get(f"/docs/static/{name}")
        assert r.headers["content-type"].split(";")[0] in types, (name, r.headers["content-type"])
        assert len(r.content) > 10_000, name
    js = await api.get("/docs/static/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in js.content
    icon = await api.get("/favicon.ico")
    assert icon.headers["content-type"] == "image/png" and icon.content.startswith(b"\x89PNG\r\n\x1a\n")
    redirect = await api.get("/docs/oauth2-redirect")
    assert redirect.headers["content-type"] == "text/html; charset=utf-8"
    assert not re.search(r"(?:https?:)?//[a-z0-9]", redirect.text)
    assert (await api.get("/redoc")).status_code == 404  # no local ReDoc assets: not served
    assert (await api.get("/docs/static/nope.js")).status_code == 404


@pytest.mark.standalone_only(reason="no Redis involved: the cluster pass would add nothing")
async def test_docs_behind_a_path_prefix_name_the_prefixed_urls(settings: Settings) -> None:
    transport = httpx.ASGITransport(app=create_app(settings), root_path="/queue")
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        page = await client.get("/docs")
    assert page.status_code == 200
    assert set(_urls(page.text)) == {
        "/queue/docs/static/swagger-ui-bundle.js",
        "/queue/docs/static/swagger-ui.css",
        "/queue/favicon.ico",
        "/queue/openapi.json",
        "/queue/docs/oauth2-redirect",
    }
