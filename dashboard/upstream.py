"""The api, as the dashboard reaches it: every read of tasks and stats goes through its REST endpoints."""

from __future__ import annotations

from typing import Any

import httpx

from streamq.shared.redis import redact


class UpstreamError(Exception):
    """The api could not be reached or answered with an error."""


class Upstream:
    def __init__(self, api_url: str, client: httpx.AsyncClient | None = None, service_key: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        # the dashboard's own reads (history sampling, scraping /metrics) use the service key, if set;
        # requests made for a logged-in user replace it with that user's key
        headers = {"authorization": f"Bearer {service_key}"} if service_key else None
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0), headers=headers)

    async def request(
        self, method: str, path: str, *, params: Any = None, content: bytes | None = None, headers: Any = None
    ) -> httpx.Response:
        try:
            return await self.client.request(
                method, self.api_url + path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as error:
            raise UpstreamError(f"the api at {redact(self.api_url)} did not answer: {type(error).__name__}") from error

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise UpstreamError(f"{method} {path} answered {response.status_code}")
        return response.json()

    async def aclose(self) -> None:
        await self.client.aclose()
