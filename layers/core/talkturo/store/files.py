"""The files bucket (S3): uploads kept for a while, such as contact-import CSVs."""

from __future__ import annotations

from talkturo import aws
from talkturo.config import get_settings


def put(key: str, body: bytes, content_type: str) -> None:
    aws.client("s3").put_object(
        Bucket=get_settings().bucket_name, Key=key, Body=body, ContentType=content_type
    )


def read(key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object (any more)."""
    client = aws.client("s3")
    try:
        answer = client.get_object(Bucket=get_settings().bucket_name, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    body: bytes = answer["Body"].read()
    return body


def presigned_url(key: str, *, expires_seconds: int, filename: str | None = None) -> str:
    """A short-lived GET URL for the object (the API hands these out for recordings)."""
    params: dict[str, str] = {"Bucket": get_settings().bucket_name, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'inline; filename="{filename}"'
    url: str = aws.client("s3").generate_presigned_url(
        "get_object", Params=params, ExpiresIn=expires_seconds
    )
    return url
