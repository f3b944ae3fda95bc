"""A real HTTP proxy for the retry tests: it forwards every request to the api, but replaces the answer
to the first ``fail_first`` of them with a 503 (after the api has applied it), as a load balancer or a
dropped connection would leave a client not knowing whether its request was applied."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FlakyProxy:
    def __init__(self, upstream: str, fail_first: int = 1) -> None:
        self.upstream = upstream
        self.fail_left = fail_first
        self.forwarded: list[tuple[str, str]] = []  # (method, path) of every request the api got
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=body)
                with proxy.lock:
                    proxy.forwarded.append((self.command, self.path))
                    failing = proxy.fail_left > 0
                    proxy.fail_left -= 1
                status, content = (
                    (503, b'{"detail":"proxy says no"}') if failing else (answer.status_code, answer.content)
                )
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(content)))
                if failing:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
