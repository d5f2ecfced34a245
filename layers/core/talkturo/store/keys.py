"""Key formats of the single table, in one place (see docs/data-model.md)."""

from __future__ import annotations


def account(account_id: str) -> str:
    """The partition holding an account's own items."""
    return f"A#{account_id}"


def account_scoped(account_id: str, *parts: str) -> str:
    """A further partition that still names the account (tag lists, report rows …)."""
    return "#".join([f"A#{account_id}", *parts])


def api_key_lookup(secret_hash: str) -> str:
    return f"APIKEY#{secret_hash}"
