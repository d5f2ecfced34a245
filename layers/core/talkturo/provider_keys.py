"""The AI providers' API keys: the environment plus, on AWS, the provider keys secret (one JSON
object whose names are the keys' environment names). Read by the voice service and the
post-call analysis, which use the same provider adapters."""

from __future__ import annotations

import json
import os
from typing import Any

from talkturo.logs import logger

# The environment variable (or key of the providers' secret) holding each provider's API key.
KEY_NAMES: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GEMINI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "qwen": "DASHSCOPE_API_KEY",
    "kimi": "MOONSHOT_API_KEY",
    "dashscope": "DASHSCOPE_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
    "assemblyai": "ASSEMBLYAI_API_KEY",
    "cartesia": "CARTESIA_API_KEY",
    "elevenlabs": "ELEVENLABS_API_KEY",
}


def provider_key(env: dict[str, str], provider: str) -> str | None:
    """The provider's API key in `env`, if one is given."""
    name = KEY_NAMES.get(provider)
    return (env.get(name) or None) if name else None


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
