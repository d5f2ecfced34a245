"""The AI providers' API keys: the environment plus, on AWS, the provider keys secret (one JSON
object whose names are the keys' environment names). Read by the voice service and the
post-call analysis, which use the same provider adapters."""

from __future__ import annotations

import json
import os
from typing import Any

from talkturo.logs import logger


def provider_env() -> dict[str, str]:
    """The environment, with the secret's keys added where the environment has none."""
    env = dict(os.environ)
    arn = env.get("PROVIDER_KEYS_SECRET_ARN")
    if arn:
        keys = _secret_json(arn)
        env.update({k: str(v) for k, v in keys.items() if v and k not in env})
    return env


def _secret_json(arn: str) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.parameters import get_secret

    try:
        value = json.loads(str(get_secret(arn, max_age=300)))
    except ValueError:
        logger.error("the provider keys secret is not a JSON object")
        return {}
    return value if isinstance(value, dict) else {}
