"""The SSRF guard against 40+ URLs aimed at loopback and internal ranges: every one is refused at
submission-style checking, by the webhook sender and by the http task type, and a canary listening
on loopback receives nothing. Then the controls: the canary does get a connection when the guard
is lifted, and a pinned name connects to the address it was checked on."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx
import pytest

from streamq.services.notifier.sender import Sender
from streamq.services.worker import handlers_http
from streamq.shared.deliveries import Claimed
from streamq.shared.errors import Permanent
from streamq.shared.ssrf import BlockedUrl, SsrfGuard, blocked_reason, guarded_client, system_resolve
from streamq.testing import free_port
from tests.integration.receivers import Answer, Canary, Receiver, serving

FAKE_DNS = {  # names a hostile DNS server could answer with
    "rebind.example": ["127.0.0.1"],
    "mixed.example": ["93.184.215.14", "127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:127.0.0.1"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    if host in FAKE_DNS:
        return FAKE_DNS[host]
    return await system_resolve(host, port)


def local_hostname() -> list[str]:
    """This machine's own name when the system resolver maps it to loopback (/etc/hosts)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except OSError:
        return []
    return [name] if addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses) else []


def urls(p: int) -> list[str]:
    return [
        f"http://127.0.0.1:{p}/",
        f"http://127.1:{p}/",
        f"http://127.0.1:{p}/",
        f"http://2130706433:{p}/",  # decimal
        f"http://0x7f000001:{p}/",  # hex
        f"http://0x7f.0.0.1:{p}/",  # dotted hex
        f"http://017700000001:{p}/",  # octal
        f"http://0177.0.0.1:{p}/",  # dotted octal
        f"http://127.0.0.1.:{p}/",
        f"http://0.0.0.0:{p}/",
        f"http://0:{p}/",
        f"http://localhost:{p}/",
        f"http://localhost.:{p}/",
        f"http://LocalHost:{p}/",
        f"http://api.localhost:{p}/",
        f"http://ip6-localhost:{p}/",
        f"http://[::1]:{p}/",
        f"http://[::]:{p}/",
        f"http://[0:0:0:0:0:0:0:1]:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",  # IPv4-mapped
        f"http://[::ffff:7f00:1]:{p}/",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/",
        f"http://[::127.0.0.1]:{p}/",  # IPv4-compatible
        f"http://[64:ff9b::7f00:1]:{p}/",  # NAT64
        f"http://[2002:7f00:1::]:{p}/",  # 6to4
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://198.18.0.1/",  # benchmarking
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://[fd00::1]/",  # unique-local
        "http://[fe80::1]/",  # link-local
        "http://[ff02::1]/",  # multicast
        f"http://rebind.example:{p}/",  # a DNS name resolving to 127.0.0.1
        f"http://mixed.example:{p}/",  # one public and one loopback answer
        "http://metadata.example/",
        f"http://mapped.example:{p}/",
        f"http://user:pass@example.com:{p}/",  # user info
        f"http://example.com@127.0.0.1:{p}/",  # user info trick
        f"http://127.0.0.1:{p}#@example.com/",
        f"https://127.0.0.1:{p}/",
        f"ftp://127.0.0.1:{p}/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{p}/_GET",
        *(f"http://{name}:{p}/" for name in local_hostname()),
    ]


@pytest.fixture
def guard() -> SsrfGuard:
    return SsrfGuard(resolver=fake_resolver)


async def test_every_url_is_refused_and_the_canary_hears_nothing(
    guard: SsrfGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Canary() as canary:
        table = urls(canary.port)
        assert len(table) >= 45
        async with guarded_client(guard, 2.0) as client:
            sender = Sender(client, guard, deliveries=None, secrets=[b"k" * 32], schedule=[0])  # type: ignore[arg-type]
            monkeypatch.setattr(handlers_http, "_guard", guard)
            for url in table:
                with pytest.raises(BlockedUrl) as info:
                    await guard.check_url(url)
                assert str(info.value), url
                claimed = Claimed("msg_1", 1, 1, "T", "completed", url, b"{}")
                status, error, _retry_after, _ = await sender.post(claimed)
                assert status is None and error.startswith("refused by"), (url, error)
                with pytest.raises(Permanent, match="URL refused"):
                    await handlers_http.http_request({"url": url})
        assert canary.connections == 0


async def test_the_canary_is_reachable_when_the_guard_is_lifted() -> None:
    open_guard = SsrfGuard(allow_private=True)
    async with Canary() as canary, guarded_client(open_guard, 2.0) as client:
        response = await client.get(f"http://127.0.0.1:{canary.port}/")
        assert response.status_code == 200 and canary.connections == 1
        await open_guard.check_url(f"http://2130706433:{canary.port}/")
        with pytest.raises(BlockedUrl, match="user info"):  # user info is refused even then
            await open_guard.check_url(f"http://a:b@127.0.0.1:{canary.port}/")


async def test_a_redirect_to_an_internal_address_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = SsrfGuard(allowed_hosts=["localhost"])  # the redirector itself is allow-listed by name
    async with Canary() as canary:
        receiver = Receiver()
        receiver.host = "localhost"
        receiver.on("/go", Answer(302, {"location": f"http://127.0.0.1:{canary.port}/"}))
        async with serving(receiver), guarded_client(guard, 2.0) as client:
            sender = Sender(client, guard, deliveries=None, secrets=[b"k" * 32], schedule=[0])  # type: ignore[arg-type]
            status, error, _, _ = await sender.post(
                Claimed("msg_1", 1, 1, "T", "completed", receiver.url("/go"), b"{}")
            )
            assert (status, error) == (302, "")
            monkeypatch.setattr(handlers_http, "_guard", guard)
            with pytest.raises(handlers_http.UnexpectedStatus, match="HTTP 302"):
                await handlers_http.http_request({"url": receiver.url("/go")})
            with pytest.raises(BlockedUrl):  # the target itself is refused
                await guard.check_url(f"http://127.0.0.1:{canary.port}/")
        assert len(receiver.at("/go")) == 2 and canary.connections == 0


async def test_the_connection_goes_to_the_checked_address_and_keeps_the_name() -> None:
    calls: list[str] = []

    async def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    guard = SsrfGuard(allowed_hosts=["pinned.test"], resolver=counting)
    receiver = Receiver()
    async with serving(receiver), guarded_client(guard, 2.0) as client:
        response = await client.post(f"http://pinned.test:{receiver.port}/hook", content=b"x")
    assert response.status_code == 200
    assert calls == ["pinned.test"]  # resolved once, by the guard; nothing else looked it up
    [request] = receiver.requests
    assert request.headers["host"] == f"pinned.test:{receiver.port}"


@pytest.mark.parametrize(
    ("address", "fragment"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:10.1.2.3", "embeds 10.1.2.3"),
     ("64:ff9b::a9fe:a9fe", "metadata"), ("2002:c0a8:101::", "embeds 192.168.1.1"),
     ("2001:0:4136:e378:8000:63bf:80ff:fffe", "embeds"), ("100.100.100.100", "carrier-grade"),
     ("198.19.255.255", "benchmark"), ("0.1.2.3", "this network"), ("fc00::5", "unique-local")],
)  # fmt: skip
def test_blocked_reasons_name_the_range(address: str, fragment: str) -> None:
    reason = blocked_reason(address)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None


def test_a_mapped_public_address_is_still_refused() -> None:
    assert "IPv4-mapped" in (blocked_reason("::ffff:8.8.8.8") or "")


async def test_https_to_the_pinned_address_keeps_sni_and_checks_the_certificate_name() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    sni: list[str | None] = []
    hosts: list[str] = []
    server_context.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment,misc]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        hosts.extend(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    port = free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port, ssl=server_context)
    guard = SsrfGuard(allowed_hosts=["hooks.test", "other.test"], resolver=resolver)
    try:
        async with guarded_client(guard, 2.0, verify=client_context) as client:
            response = await client.post(f"https://hooks.test:{port}/hook", content=b"x")
            assert response.status_code == 200
            with pytest.raises(httpx.ConnectError, match=r"certificate|hostname"):
                # the same address under another name: the certificate is checked against the name
                await client.post(f"https://other.test:{port}/hook", content=b"x")
    finally:
        server.close()
        await server.wait_closed()
    assert sni == ["hooks.test", "other.test"]  # SNI carries the name, not the pinned address
    assert hosts == [f"hooks.test:{port}"]
