"""Redis credentials: an ACL user with the least privileges the docs (Security) document, and TLS (rediss://).
Passwords never appear in logs, errors or the service registry."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from streamq.services.api.app import create_app
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.redis import connect, redact
from streamq.shared.settings import Settings
from streamq.testing import RedisServer, free_port, wait_port
from tests.integration.helpers import running_worker, wait_for_status
from tests.support import ROOT

PASSWORD = "s3cret-Pa55word"


def readme_acl() -> str:
    """The least-privilege ACL exactly as the docs' Security page documents it."""
    readme = (ROOT / "docs" / "security.md").read_text()
    [line] = [ln for ln in readme.splitlines() if ln.startswith("user streamq on >PASSWORD ")]
    return line.replace(">PASSWORD", f">{PASSWORD}")


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(f"user default off\n{readme_acl()}\n")
    server = RedisServer("--aclfile", str(acl_file))
    yield server
    server.stop()


async def test_services_work_as_a_least_privilege_acl_user(
    acl_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://streamq:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    settings = Settings(redis_url=url, key_prefix="streamq", heartbeat_s=0.5, _env_file=None)  # type: ignore[call-arg]
    caplog.set_level(logging.DEBUG)
    app = create_app(settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    async with app.router.lifespan_context(app), client, running_worker(settings):
        created = (await client.post("/api/tasks", json={"type": "echo", "payload": "acl"})).json()
        queue = app.state.queue
        assert await wait_for_status(queue, created["id"], {"completed"}) == "completed"
        services = (await client.get("/api/services")).text
        assert PASSWORD not in services
    # outside its keys the user can do nothing
    limited = Redis.from_url(url, decode_responses=True)
    with pytest.raises(NoPermissionError):
        await limited.set("other:key", "x")
    with pytest.raises(NoPermissionError):
        await limited.flushall()
    await limited.aclose()
    assert PASSWORD not in caplog.text


async def test_wrong_password_error_is_redacted(acl_redis: RedisServer) -> None:
    url = f"redis://streamq:wrong-{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    settings = Settings(redis_url=url, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(Exception) as info:
        await connect(settings, attempts=1)
    assert PASSWORD not in str(info.value)
    assert redact(url) == f"redis://streamq:***@127.0.0.1:{acl_redis.port}/0"


def make_certs(folder: Path) -> dict[str, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=streamq test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return {name: folder / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server answering only TLS, with a certificate from a throwaway CA; yields (port, CA file)."""
    certs = make_certs(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", str(certs["server.crt"]), "--tls-key-file", str(certs["server.key"]),
         "--tls-ca-cert-file", str(certs["ca.crt"]), "--tls-auth-clients", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port)
    yield port, certs["ca.crt"]
    proc.terminate()
    proc.wait(timeout=10)


async def test_tls_rediss_url(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    settings = Settings(redis_url=url, key_prefix="tls", heartbeat_s=0.5, _env_file=None)  # type: ignore[call-arg]
    client = await connect(settings)
    queue = Queue(client, KeySchema("tls"))
    [done] = await queue.submit([TaskCreate(type="echo", payload={"tls": True})])
    async with running_worker(settings):
        assert await wait_for_status(queue, done.task.id, {"completed"}) == "completed"
    assert (await queue.get(done.task.id)).result == {"tls": True}
    await client.aclose()
    # a plain connection to the TLS port is refused, and so is a certificate from an unknown CA
    plain = Settings(redis_url=f"redis://127.0.0.1:{port}/0", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match=r"cannot reach Redis.*no answer to PING within 5 s"):
        await connect(plain, attempts=1)  # the TLS port never answers a plain PING: one bounded attempt
    untrusted = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="cannot reach Redis"):
        await connect(untrusted, attempts=1)
