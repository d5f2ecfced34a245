"""The files bucket (S3): uploads kept for a while, such as contact-import CSVs."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from talkturo.config import get_settings


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("s3", region_name=get_settings().aws_region)


def put(key: str, body: bytes, content_type: str) -> None:
    _client().put_object(
        Bucket=get_settings().bucket_name, Key=key, Body=body, ContentType=content_type
    )


def read(key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object (any more)."""
    client = _client()
    try:
        answer = client.get_object(Bucket=get_settings().bucket_name, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    body: bytes = answer["Body"].read()
    return body
