"""Signed, short-lived tokens (HMAC-SHA256): the voice service learns from one which call a media
stream belongs to, without a database read on the carrier's side of the call.

Format: base64url(JSON claims) "." base64url(HMAC-SHA256(secret, first part)). The claims hold
`exp` (epoch seconds). Verification compares in constant time and checks the expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_TTL_SECONDS = 120


class InvalidToken(Exception):
    """Not a token this secret signed, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(
    claims: Mapping[str, Any],
    secret: str,
    *,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    if not secret:
        raise ValueError("a token secret is required")
    issued = time.time() if now is None else now
    body = {**claims, "exp": int(issued + ttl_seconds)}
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify(token: str, secret: str, *, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid, unexpired token; InvalidToken otherwise."""
    if not secret:
        raise InvalidToken("no secret")
    payload, dot, mac = token.partition(".")
    if not dot or not hmac.compare_digest(_mac(secret, payload), mac):
        raise InvalidToken("bad signature")
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, binascii.Error) as error:
        raise InvalidToken("malformed") from error
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise InvalidToken("malformed")
    if (time.time() if now is None else now) >= claims["exp"]:
        raise InvalidToken("expired")
    return claims
