"""Outbound HTTP to addresses a customer configured (webhook tools, customer event endpoints),
guarded against server-side request forgery.

A customer controls the URL and the DNS behind it, so the platform must never be made to call
its own network: the cloud metadata service (169.254.169.254), the VPC, loopback services.

- The host is resolved once (the event loop's getaddrinfo, or an injected resolver) and EVERY
  address it resolves to is checked: private, loopback, link-local, multicast, reserved,
  unspecified, shared/CGNAT (100.64.0.0/10), documentation and benchmarking ranges, IPv6 unique
  local / link-local / site-local, and IPv6 forms that carry an IPv4 address (IPv4-mapped
  ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are checked as the IPv4 address they carry.
  Networks the operator lists in `TALKTURO_OUTBOUND_ALLOW` (comma-separated CIDRs) pass.
  Plain http is refused, except to the networks listed in `TALKTURO_OUTBOUND_ALLOW_HTTP` (the
  local platform lists loopback there, for its event inbox): every address the host resolves
  to must then be in one of them.
- The connection goes to the checked address itself (no second lookup, so a rebinding DNS answer
  cannot swap the target), with the original Host header, and for https the TLS server name
  (SNI) and certificate verification use the host name, not the address.
- Redirects are followed here (unless the caller says not to: customer events treat a 3xx as
  the answer), one hop at a time, each hop checked like the first (scheme too);
  headers the caller set are dropped when a redirect leaves the origin, so credentials meant for
  one host never reach another.
- The whole exchange runs under one deadline, and reading stops after `max_bytes` of (decoded)
  body; compressed bodies are decompressed in bounded steps, so a small gzip bomb cannot expand.
- Environment proxies are ignored (`trust_env=False`): the checked address is the one connected.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Awaitable[Iterable[str]]]

ALLOW_ENV = "TALKTURO_OUTBOUND_ALLOW"
ALLOW_HTTP_ENV = "TALKTURO_OUTBOUND_ALLOW_HTTP"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Set by this module (or by httpx from the body); never taken from the caller.
_CONTROLLED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# What may follow a redirect to another origin: nothing that could be a credential.
_CROSS_ORIGIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "content-type", "user-agent"}
)


class OutboundHttpError(Exception):
    """The request could not be completed: connection failed, bad answer, too many redirects."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BlockedDestination(OutboundHttpError):
    """The URL, or an address its host resolves to, is not allowed."""


class OutboundTimeout(OutboundHttpError):
    """No complete answer before the deadline."""


@dataclass(frozen=True)
class OutboundPolicy:
    """What customer-configured URLs may reach. `allowed_networks`: addresses the operator lets
    through although they are not public (an internal service, or 127.0.0.0/8 in tests);
    `plain_http_networks`: where plain http may go although https is required (they are
    allowed too)."""

    require_https: bool = True
    allowed_networks: tuple[IPNetwork, ...] = ()
    plain_http_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OutboundPolicy:
        env = os.environ if environ is None else environ
        http_networks = _parse_networks(ALLOW_HTTP_ENV, env.get(ALLOW_HTTP_ENV, ""))
        return cls(
            allowed_networks=_parse_networks(ALLOW_ENV, env.get(ALLOW_ENV, "")) + http_networks,
            plain_http_networks=http_networks,
        )


def _parse_networks(name: str, text: str) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{name}: {item.strip()!r} is not a network") from None
    return tuple(networks)


@dataclass(frozen=True)
class GuardedResponse:
    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    truncated: bool
    url: str


def _networks(*items: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in items)


# Spelled out rather than left to `is_global` alone: its answers have changed between Python
# releases, and the label makes the refusal readable.
_BLOCKED = _networks(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved (IPv4-compatible)"),
    ("64:ff9b:1::/48", "reserved (local NAT64)"),
    ("100::/64", "reserved (discard)"),
    ("2001::/23", "reserved (IETF protocols)"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where the network would deliver it there."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _in(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _allowed(address: IPAddress, policy: OutboundPolicy) -> bool:
    return _in(address, policy.allowed_networks)


def plain_http_allowed(address: IPAddress, policy: OutboundPolicy) -> bool:
    """Whether a plain-http request may go to `address` under a policy requiring https."""
    embedded = _embedded_ipv4(address)
    return _in(address, policy.plain_http_networks) or (
        embedded is not None and _in(embedded, policy.plain_http_networks)
    )


def _label(address: IPAddress) -> str | None:
    for network, label in _BLOCKED:
        if address.version == network.version and address in network:
            return label
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "non-public"
    return None


def blocked_reason(address: IPAddress, policy: OutboundPolicy) -> str | None:
    """Why `address` may not be contacted under `policy` (a label such as "loopback"), or None
    when it may. An IPv6 address carrying an IPv4 one is judged as that IPv4 address."""
    embedded = _embedded_ipv4(address)
    if _allowed(address, policy) or (embedded is not None and _allowed(embedded, policy)):
        return None
    return _label(embedded if embedded is not None else address)


async def system_resolver(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _checked_addresses(
    host: str, policy: OutboundPolicy, resolver: Resolver, *, plain_http: bool = False
) -> list[str]:
    """The addresses to connect to, all allowed; an IP literal host is not resolved.
    `plain_http`: an http URL under a policy requiring https (each address must be one of the
    policy's plain-http networks)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        answers: list[str] = [str(literal)]
    else:
        try:
            answers = list(dict.fromkeys(await resolver(host)))
        except (OSError, UnicodeError):
            raise OutboundHttpError(f"{host} could not be resolved") from None
        if not answers:
            raise OutboundHttpError(f"{host} could not be resolved")
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            raise BlockedDestination(f"{host} resolves to an unrecognised address") from None
        reason = blocked_reason(address, policy)
        if reason is not None:
            raise BlockedDestination(f"{host} resolves to a non-public address ({reason})")
        if plain_http and not plain_http_allowed(address, policy):
            raise BlockedDestination("only https URLs are allowed")
    return answers


def _check_url(url: httpx.URL, policy: OutboundPolicy) -> str:
    """The host name to resolve; refuses schemes and URL forms that are not allowed (an http
    URL under a policy with plain-http networks is judged by its addresses)."""
    allowed = ("https",) if policy.require_https else ("https", "http")
    if policy.plain_http_networks:
        allowed = ("https", "http")
    if url.scheme not in allowed:
        raise BlockedDestination(
            "only https URLs are allowed" if policy.require_https else "only http(s) URLs"
        )
    if url.userinfo:
        raise BlockedDestination("URLs carrying credentials are refused")
    host = url.raw_host.decode("ascii").strip("[]").rstrip(".")
    if not host:
        raise BlockedDestination("the URL names no host")
    return host


def check_static(url: str, *, policy: OutboundPolicy | None = None) -> None:
    """Refuse what can be refused without resolving the host (when a URL is configured):
    scheme, credentials, no host, and an address literal that is not allowed. Plain http
    passes only to a literal address (or `localhost`) in the policy's plain-http networks."""
    policy = policy if policy is not None else OutboundPolicy.from_env()
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise OutboundHttpError("the URL is not valid") from None
    host = _check_url(target, policy)
    literal = "127.0.0.1" if host.lower() == "localhost" else host
    try:
        address: IPAddress | None = ipaddress.ip_address(literal)
    except ValueError:
        address = None
    plain_http = target.scheme == "http" and policy.require_https
    if address is None:
        if plain_http:
            raise BlockedDestination("only https URLs are allowed")
        return
    reason = blocked_reason(address, policy)
    if reason is not None:
        raise BlockedDestination(f"{host} is a non-public address ({reason})")
    if plain_http and not plain_http_allowed(address, policy):
        raise BlockedDestination("only https URLs are allowed")


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port


def _decoder(encoding: str) -> Any:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # zlib or gzip header
    raise OutboundHttpError(f"unsupported response encoding {encoding!r}")


async def _read_bounded(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most `max_bytes` of decoded body, and whether more was there."""
    decoder = _decoder(response.headers.get("content-encoding", "").strip().lower())
    body = bytearray()
    try:
        async for raw in response.aiter_raw():
            data = raw if decoder is None else decoder.decompress(raw, max_bytes + 1 - len(body))
            body += data
            if len(body) > max_bytes:
                return bytes(body[:max_bytes]), True
        if decoder is not None:
            body += decoder.flush()
    except zlib.error:
        raise OutboundHttpError("the response body could not be decoded") from None
    if len(body) > max_bytes:
        return bytes(body[:max_bytes]), True
    return bytes(body), False


async def _send_pinned(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    host: str,
    addresses: Sequence[str],
    headers: httpx.Headers,
    body: bytes | None,
) -> httpx.Response:
    """Send to the checked addresses in turn (the next only when connecting failed)."""
    request_headers = httpx.Headers(headers)
    request_headers["Host"] = url.netloc.decode("ascii")
    extensions: dict[str, Any] = {}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if url.scheme == "https":
            extensions["sni_hostname"] = host
    for address in addresses:
        request = client.build_request(
            method,
            url.copy_with(host=address),
            headers=request_headers,
            content=body,
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError:
            continue
        except httpx.TimeoutException:
            raise OutboundTimeout(f"{host} did not answer in time") from None
        except httpx.HTTPError as error:
            raise OutboundHttpError(f"{host}: {type(error).__name__}") from None
    raise OutboundHttpError(f"could not connect to {host}")


async def guarded_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Any = None,
    content: bytes | None = None,
    params: Mapping[str, Any] | None = None,
    timeout: float,  # noqa: ASYNC109 - one deadline for all hops; enforced inside
    max_bytes: int = 65536,
    max_redirects: int = 3,
    follow_redirects: bool = True,
    policy: OutboundPolicy | None = None,
    resolver: Resolver | None = None,
    verify: ssl.SSLContext | None = None,
) -> GuardedResponse:
    """Send one request to a customer-configured URL, or raise `BlockedDestination` /
    `OutboundTimeout` / `OutboundHttpError`.

    `content` sends these exact bytes (what a signature was computed over); `json_body` is
    serialized compactly with Content-Type application/json. `timeout` bounds everything:
    resolution, every redirect hop and reading the body. `verify`: the TLS trust to use
    (default: the bundled CA certificates). `follow_redirects=False`: a 3xx answer is
    returned as it is, its location never contacted.
    """
    if json_body is not None and content is not None:
        raise ValueError("give json_body or content, not both")
    policy = policy if policy is not None else OutboundPolicy.from_env()
    send_headers = httpx.Headers(
        {k: v for k, v in headers.items() if k.lower() not in _CONTROLLED_HEADERS}
    )
    body = content
    if json_body is not None:
        body = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
        send_headers.setdefault("Content-Type", "application/json")
    # Asking for no compression keeps bodies cheap to bound; gzip/deflate are handled anyway.
    send_headers.setdefault("Accept-Encoding", "identity")
    try:
        target = httpx.URL(url)
        if params:
            target = target.copy_merge_params(params)
    except (httpx.InvalidURL, TypeError):
        raise OutboundHttpError("the URL is not valid") from None
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(
                method.upper(),
                target,
                send_headers,
                body,
                io_timeout=timeout,
                max_bytes=max_bytes,
                max_redirects=max_redirects if follow_redirects else -1,
                policy=policy,
                resolver=resolver or system_resolver,
                verify=verify,
            )
    except TimeoutError:
        raise OutboundTimeout(f"no complete answer within {timeout:g} s") from None


_DEFAULT_TRUST: ssl.SSLContext | None = None


def _default_trust() -> ssl.SSLContext:
    """httpx's own default trust (the bundled CA certificates), built once: building it costs
    tens of milliseconds, which every request paid."""
    global _DEFAULT_TRUST
    if _DEFAULT_TRUST is None:
        _DEFAULT_TRUST = httpx.create_ssl_context()
    return _DEFAULT_TRUST


async def _exchange(
    method: str,
    target: httpx.URL,
    headers: httpx.Headers,
    body: bytes | None,
    *,
    io_timeout: float,
    max_bytes: int,
    max_redirects: int,
    policy: OutboundPolicy,
    resolver: Resolver,
    verify: ssl.SSLContext | None,
) -> GuardedResponse:
    async with httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(io_timeout),
        verify=verify if verify is not None else _default_trust(),
    ) as client:
        # max_redirects -1: redirects are not followed (one hop, whatever it answers).
        for hop in range(max(max_redirects, 0) + 1):
            host = _check_url(target, policy)
            plain_http = target.scheme == "http" and policy.require_https
            addresses = await _checked_addresses(host, policy, resolver, plain_http=plain_http)
            response = await _send_pinned(client, method, target, host, addresses, headers, body)
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location and max_redirects >= 0:
                await response.aclose()
                if hop == max_redirects:
                    raise OutboundHttpError(f"more than {max_redirects} redirects")
                try:
                    following = target.join(location)
                except httpx.InvalidURL:
                    raise OutboundHttpError("the redirect location is not a valid URL") from None
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method = "GET" if method != "HEAD" else method
                    body = None
                    headers = httpx.Headers(
                        {k: v for k, v in headers.items() if k.lower() != "content-type"}
                    )
                if _origin(following) != _origin(target):
                    headers = httpx.Headers(
                        {k: v for k, v in headers.items() if k.lower() in _CROSS_ORIGIN_HEADERS}
                    )
                target = following
                continue
            try:
                data, truncated = await _read_bounded(response, max_bytes)
            except httpx.TimeoutException:
                raise OutboundTimeout(f"{host} did not finish answering in time") from None
            except httpx.HTTPError as error:
                raise OutboundHttpError(f"{host}: {type(error).__name__}") from None
            finally:
                await response.aclose()
            return GuardedResponse(
                status=response.status_code,
                headers=dict(response.headers.items()),
                body=data,
                truncated=truncated,
                url=str(target),
            )
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
