"""boto3 clients, made on first use and kept for the life of the process (a Lambda container)."""

from __future__ import annotations

from functools import cache
from typing import Any

from talkturo.config import get_settings


@cache
def client(service: str) -> Any:
    # boto3 is imported here so that code paths which never need it do not pay for it.
    import boto3

    return boto3.client(service, region_name=get_settings().aws_region)
