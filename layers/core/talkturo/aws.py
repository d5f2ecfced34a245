"""boto3 clients, made on first use and kept for the life of the process (a Lambda container)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from talkturo.config import get_settings

# boto3's default session is not safe to make clients from in two threads at once (a
# dispatch claims its slots side by side); the clients it makes are.
_making = threading.Lock()


@cache
def client(service: str) -> Any:
    # boto3 is imported here so that code paths which never need it do not pay for it.
    import boto3

    with _making:
        return boto3.client(service, region_name=get_settings().aws_region)
