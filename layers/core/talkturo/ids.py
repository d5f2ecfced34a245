"""Prefixed, time-sortable identifiers (`asst_01J…`).

A ULID sorts by creation time, so "newest first" is a reverse key order in DynamoDB.
"""

from __future__ import annotations

from ulid import ULID

PREFIXES = {
    "account": "acct",
    "api_key": "key",
    "assistant": "asst",
    "phone_number": "pn",
    "campaign": "camp",
    "contact": "ct",
    "company": "co",
    "call": "call",
    "custom_field": "cf",
    "transaction": "txn",
    "contact_import": "imp",
    "analysis_run": "anr",
    "webhook_endpoint": "whe",
    "event": "evt",
    "webhook_delivery": "dlv",
    "test_suite": "tsuite",
    "test_run": "trun",
}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{ULID()}"


def has_prefix(value: str, kind: str) -> bool:
    prefix = PREFIXES[kind] + "_"
    return value.startswith(prefix) and len(value) == len(prefix) + 26
