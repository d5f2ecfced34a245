"""The SSRF guard: every resolved address checked, the checked address connected, redirects
re-checked, bodies bounded, one deadline."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from talkturo.http_guard import (
    BlockedDestination,
    OutboundHttpError,
    OutboundPolicy,
    OutboundTimeout,
    blocked_reason,
    guarded_request,
)
from tests.asgi_server import served

LOOPBACK_ALLOWED = OutboundPolicy(
    require_https=False, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)
)


def resolver_of(table: dict[str, list[str]]) -> Callable[[str], Awaitable[Iterable[str]]]:
    async def resolve(host: str) -> Iterable[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


async def _no_lookup(host: str) -> Iterable[str]:
    raise AssertionError(f"{host} must not be resolved")


def _get(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("headers", {})
    kwargs.setdefault("timeout", 5)
    return asyncio.run(guarded_request("GET", url, **kwargs))


# --------------------------------------------------------------------------- the test server


def _app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.api_route("/echo", methods=["GET", "POST"])
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        entry = {
            "method": request.method,
            "path": "/echo",
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode(),
        }
        seen.append(entry)
        return JSONResponse({"ok": True})

    @app.api_route("/to", methods=["GET", "POST"])
    async def redirect(request: Request, location: str, code: int = 302) -> Response:
        seen.append({"method": request.method, "path": "/to"})
        return RedirectResponse(location, status_code=code)

    @app.get("/loop")
    async def loop() -> Response:
        seen.append({"path": "/loop"})
        return RedirectResponse("/loop", status_code=302)

    @app.get("/big")
    async def big() -> Response:
        return Response(b"x" * 200_000, media_type="text/plain")

    @app.get("/endless")
    async def endless() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b"y" * 4096
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/bomb")
    async def bomb() -> Response:
        packed = gzip.compress(b"\0" * 20_000_000)
        return Response(packed, headers={"Content-Encoding": "gzip"}, media_type="text/plain")

    @app.get("/small-gzip")
    async def small_gzip() -> Response:
        packed = gzip.compress(b"hello, compressed")
        return Response(packed, headers={"Content-Encoding": "gzip"}, media_type="text/plain")

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with served(_app(seen)) as base:
        yield base, seen


# --------------------------------------------------------------------------- addresses


BLOCKED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "169.254.169.254",  # the cloud metadata service
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "::1",
    "::",
    "fd00::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "::7f00:1",  # IPv4-compatible 127.0.0.1
]


@pytest.mark.parametrize("address", BLOCKED)
def test_every_non_public_range_is_refused(address: str) -> None:
    resolve = resolver_of({"hooks.example.com": [address]})
    with pytest.raises(BlockedDestination, match="non-public"):
        _get("https://hooks.example.com/x", resolver=resolve, policy=OutboundPolicy())


def test_one_private_answer_among_public_ones_is_enough_to_refuse() -> None:
    resolve = resolver_of({"hooks.example.com": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(BlockedDestination, match=r"\(private\)"):
        _get("https://hooks.example.com/x", resolver=resolve, policy=OutboundPolicy())


@pytest.mark.parametrize(
    "url",
    ["https://169.254.169.254/latest/meta-data/", "https://[::ffff:7f00:1]/", "https://[::1]/"],
)
def test_ip_literals_are_checked_without_a_lookup(url: str) -> None:
    with pytest.raises(BlockedDestination):
        _get(url, resolver=_no_lookup, policy=OutboundPolicy())


def test_public_addresses_pass_and_allowed_networks_open_private_ones() -> None:
    policy = OutboundPolicy()
    for public in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822"):
        assert blocked_reason(ipaddress.ip_address(public), policy) is None
    opened = OutboundPolicy.from_env({"TALKTURO_OUTBOUND_ALLOW": "10.20.0.0/16, fd00::/8"})
    assert blocked_reason(ipaddress.ip_address("10.20.3.4"), opened) is None
    assert blocked_reason(ipaddress.ip_address("::ffff:10.20.3.4"), opened) is None
    assert blocked_reason(ipaddress.ip_address("fd00::5"), opened) is None
    assert blocked_reason(ipaddress.ip_address("10.21.0.1"), opened) == "private"


def test_allow_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TALKTURO_OUTBOUND_ALLOW", raising=False)
    assert OutboundPolicy.from_env() == OutboundPolicy()
    with pytest.raises(ValueError, match="TALKTURO_OUTBOUND_ALLOW"):
        OutboundPolicy.from_env({"TALKTURO_OUTBOUND_ALLOW": "10.0.0.0/8,not-a-network"})


def test_default_policy_refuses_loopback(
    server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, seen = server
    monkeypatch.delenv("TALKTURO_OUTBOUND_ALLOW", raising=False)
    before = len(seen)
    with pytest.raises(BlockedDestination):
        _get(base.replace("http://", "https://") + "/echo")
    assert len(seen) == before


def test_plain_http_is_refused_when_https_is_required() -> None:
    with pytest.raises(BlockedDestination, match="https"):
        _get("http://hooks.example.com/x", resolver=_no_lookup, policy=OutboundPolicy())
    with pytest.raises(BlockedDestination, match="https"):
        _get("ftp://hooks.example.com/x", resolver=_no_lookup, policy=OutboundPolicy())


def test_urls_with_credentials_are_refused() -> None:
    with pytest.raises(BlockedDestination, match="credentials"):
        _get("https://user:pw@hooks.example.com/", resolver=_no_lookup, policy=OutboundPolicy())


def test_unresolvable_host_is_an_error() -> None:
    with pytest.raises(OutboundHttpError, match="resolved"):
        _get("https://nowhere.example.com/", resolver=resolver_of({}), policy=OutboundPolicy())


# --------------------------------------------------------------------------- connecting


def test_connects_to_the_checked_address_with_the_original_host(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = server
    port = base.rsplit(":", 1)[1]
    answers = [["127.0.0.1"], ["10.9.9.9"]]  # a rebinding DNS: private on the second lookup
    lookups: list[str] = []

    async def rebinding(host: str) -> Iterable[str]:
        lookups.append(host)
        return answers[len(lookups) - 1]

    response = _get(
        f"http://pinned.test:{port}/echo",
        headers={"Authorization": "Bearer t0ken"},
        resolver=rebinding,
        policy=LOOPBACK_ALLOWED,
    )
    assert response.status == 200
    assert response.url == f"http://pinned.test:{port}/echo"
    assert lookups == ["pinned.test"]
    assert seen[-1]["headers"]["host"] == f"pinned.test:{port}"
    assert seen[-1]["headers"]["authorization"] == "Bearer t0ken"


def test_posts_exact_bytes_and_json(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    response = asyncio.run(
        guarded_request(
            "POST",
            base + "/echo",
            headers={"Content-Type": "application/json", "Host": "evil.example"},
            content=b'{"a":1}',
            timeout=5,
            policy=LOOPBACK_ALLOWED,
        )
    )
    assert response.status == 200
    assert seen[-1]["body"] == '{"a":1}'
    assert seen[-1]["headers"]["host"] == base.removeprefix("http://")  # never the caller's
    asyncio.run(
        guarded_request(
            "POST",
            base + "/echo",
            headers={},
            json_body={"b": [1]},
            timeout=5,
            policy=LOOPBACK_ALLOWED,
        )
    )
    assert seen[-1]["body"] == '{"b":[1]}'
    assert seen[-1]["headers"]["content-type"] == "application/json"


# --------------------------------------------------------------------------- redirects


def test_redirect_to_a_private_address_is_refused(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = server
    resolve = resolver_of({"internal.test": ["10.0.0.5"]})
    for target in ("http://internal.test/admin", "http://169.254.169.254/latest/meta-data/"):
        before = len(seen)
        with pytest.raises(BlockedDestination):
            _get(f"{base}/to?location={target}", resolver=resolve, policy=LOOPBACK_ALLOWED)
        assert [entry["path"] for entry in seen[before:]] == ["/to"]


def test_redirect_to_http_is_refused_when_https_is_required() -> None:
    policy = OutboundPolicy(require_https=True)
    with pytest.raises(BlockedDestination, match="https"):
        asyncio.run(_check_redirect_scheme(policy))


async def _check_redirect_scheme(policy: OutboundPolicy) -> None:
    # A TLS endpoint redirecting to plain http: served by the TLS helper below.
    async with TlsServer("hooks.test", redirect_to="http://hooks.test/plain") as (port, ca, _):
        await guarded_request(
            "GET",
            f"https://hooks.test:{port}/",
            headers={},
            timeout=5,
            policy=OutboundPolicy(
                require_https=policy.require_https,
                allowed_networks=LOOPBACK_ALLOWED.allowed_networks,
            ),
            resolver=resolver_of({"hooks.test": ["127.0.0.1"]}),
            verify=ca,
        )


def test_redirects_are_followed_and_credentials_stay_with_their_origin(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = server
    port = base.rsplit(":", 1)[1]
    resolve = resolver_of({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    same = _get(
        f"http://a.test:{port}/to?location=/echo",
        headers={"Authorization": "Bearer keep", "X-Api-Key": "k"},
        resolver=resolve,
        policy=LOOPBACK_ALLOWED,
    )
    assert same.status == 200 and same.url == f"http://a.test:{port}/echo"
    assert seen[-1]["headers"]["authorization"] == "Bearer keep"

    other = _get(
        f"http://a.test:{port}/to?location=http://b.test:{port}/echo",
        headers={"Authorization": "Bearer keep", "X-Api-Key": "k", "Accept": "text/plain"},
        resolver=resolve,
        policy=LOOPBACK_ALLOWED,
    )
    assert other.url == f"http://b.test:{port}/echo"
    assert seen[-1]["headers"]["host"] == f"b.test:{port}"
    assert "authorization" not in seen[-1]["headers"]
    assert "x-api-key" not in seen[-1]["headers"]
    assert seen[-1]["headers"]["accept"] == "text/plain"


def test_see_other_turns_a_post_into_a_get_and_307_keeps_it(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = server
    for code, method, body in ((303, "GET", ""), (307, "POST", '{"x":1}')):
        asyncio.run(
            guarded_request(
                "POST",
                f"{base}/to?location=/echo&code={code}",
                headers={},
                json_body={"x": 1},
                timeout=5,
                policy=LOOPBACK_ALLOWED,
            )
        )
        assert (seen[-1]["method"], seen[-1]["body"]) == (method, body)


def test_redirects_are_limited(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    before = len(seen)
    with pytest.raises(OutboundHttpError, match="more than 3 redirects"):
        _get(base + "/loop", policy=LOOPBACK_ALLOWED)
    assert len(seen) - before == 4  # the first request and three redirects


# --------------------------------------------------------------------------- size and time


def test_body_is_cut_at_max_bytes(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, _ = server
    whole = _get(base + "/echo", policy=LOOPBACK_ALLOWED)
    assert (whole.body, whole.truncated) == (b'{"ok":true}', False)
    big = _get(base + "/big", policy=LOOPBACK_ALLOWED, max_bytes=1000)
    assert (len(big.body), big.truncated) == (1000, True)


def test_reading_stops_on_an_endless_body(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, _ = server
    started = time.monotonic()
    endless = _get(base + "/endless", policy=LOOPBACK_ALLOWED, max_bytes=10_000)
    assert (len(endless.body), endless.truncated) == (10_000, True)
    assert time.monotonic() - started < 3


def test_compressed_bodies_are_bounded_after_decoding(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, _ = server
    bomb = _get(base + "/bomb", policy=LOOPBACK_ALLOWED, max_bytes=5000)
    assert (bomb.body, bomb.truncated) == (b"\0" * 5000, True)
    small = _get(base + "/small-gzip", policy=LOOPBACK_ALLOWED)
    assert (small.body, small.truncated) == (b"hello, compressed", False)


async def _silent_then(behaviour: str, deadline: float) -> float:
    """A server that accepts and then never answers ('silent') or drips a byte at a time
    ('drip'); how long the guard took to give up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            if behaviour == "drip":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while True:
                    writer.write(b"z")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            else:
                await reader.read()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(OutboundTimeout):
            await guarded_request(
                "GET",
                f"http://127.0.0.1:{port}/",
                headers={},
                timeout=deadline,
                policy=LOOPBACK_ALLOWED,
            )
        return time.monotonic() - started
    finally:
        server.close()


@pytest.mark.parametrize("behaviour", ["silent", "drip"])
def test_one_deadline_bounds_the_whole_exchange(behaviour: str) -> None:
    # "drip" never leaves a read idle for long: only a total deadline ends it.
    elapsed = asyncio.run(_silent_then(behaviour, 0.5))
    assert 0.4 < elapsed < 2


# --------------------------------------------------------------------------- TLS


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `name` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsServer:
    """A minimal HTTPS server on 127.0.0.1 with a certificate for `name`; records the TLS
    server names (SNI) and request heads it received."""

    def __init__(self, name: str, redirect_to: str | None = None) -> None:
        self.name, self.redirect_to = name, redirect_to
        self.server_names: list[str | None] = []
        self.heads: list[bytes] = []
        self._tmp = tempfile.TemporaryDirectory()

    async def __aenter__(self) -> tuple[int, ssl.SSLContext, TlsServer]:
        ca, cert, key = _certificates(Path(self._tmp.name), self.name)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda _sock, server_name, _ctx: self.server_names.append(
            server_name
        )

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                if self.redirect_to:
                    writer.write(
                        f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\n"
                        "Content-Length: 0\r\n\r\n".encode()
                    )
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        port = self._server.sockets[0].getsockname()[1]
        trust = ssl.create_default_context(cafile=str(ca))
        return port, trust, self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self._tmp.cleanup()


def test_tls_uses_the_host_name_for_sni_and_certificate_checks() -> None:
    async def scenario() -> None:
        policy = OutboundPolicy(allowed_networks=LOOPBACK_ALLOWED.allowed_networks)
        resolve = resolver_of({"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        async with TlsServer("hooks.test") as (port, trust, tls):
            response = await guarded_request(
                "GET",
                f"https://hooks.test:{port}/hook",
                headers={},
                timeout=5,
                policy=policy,
                resolver=resolve,
                verify=trust,
            )
            assert (response.status, response.body) == (200, b"secure")
            assert tls.server_names == ["hooks.test"]
            assert f"Host: hooks.test:{port}".encode() in tls.heads[0]
            # Same address, another name: the certificate does not match, so no request.
            with pytest.raises(OutboundHttpError):
                await guarded_request(
                    "GET",
                    f"https://other.test:{port}/hook",
                    headers={},
                    timeout=5,
                    policy=policy,
                    resolver=resolve,
                    verify=trust,
                )
            assert len(tls.heads) == 1

    asyncio.run(scenario())
