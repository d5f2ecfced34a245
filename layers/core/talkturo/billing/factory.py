"""The platform's Stripe gateway and webhook secrets, built on first use from the settings.

On AWS both live in the Secrets Manager secret named by STRIPE_SECRET_ARN, a JSON object
{"secret_key": "sk_…", "webhook_secrets": ["whsec_…", …]} (several while a webhook secret is
rotated: any one verifying is enough), read through powertools' parameters with caching.
Locally: STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRETS (comma-separated). STRIPE_API_BASE_URL
(empty: Stripe itself) points the SDK at another server, such as the local Stripe simulator.
Secrets are never logged.
"""

from __future__ import annotations

import threading
from typing import Any

from talkturo.billing.gateway import BillingNotConfigured, StripeGateway
from talkturo.config import Settings, get_settings

SECRET_MAX_AGE_SECONDS = 300

_lock = threading.Lock()
_gateway: StripeGateway | None = None


def _secret(settings: Settings) -> tuple[str, list[str]]:
    if settings.stripe_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        secret: Any = parameters.get_secret(
            settings.stripe_secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS
        )
        if not isinstance(secret, dict):
            raise BillingNotConfigured(
                "the Stripe secret must hold a JSON object with secret_key and webhook_secrets"
            )
        hooks = secret.get("webhook_secrets") or secret.get("webhook_secret") or []
        if isinstance(hooks, str):
            hooks = [hooks]
        return str(secret.get("secret_key") or ""), [str(h) for h in hooks if h]
    hooks = [h.strip() for h in settings.stripe_webhook_secrets.split(",") if h.strip()]
    return settings.stripe_secret_key, hooks


def get_gateway() -> StripeGateway:
    """The billing adapter for this process (built lazily, then cached)."""
    global _gateway
    with _lock:
        if _gateway is None:
            settings = get_settings()
            key, _ = _secret(settings)
            if not key:
                raise BillingNotConfigured(
                    "payments are not configured: set STRIPE_SECRET_KEY (or STRIPE_SECRET_ARN "
                    "on AWS)"
                )
            _gateway = StripeGateway(key, api_base_url=settings.stripe_api_base_url or None)
        return _gateway


def webhook_secrets() -> list[str]:
    """Every secret a webhook's signature may verify with (empty: none configured)."""
    _, hooks = _secret(get_settings())
    return hooks


def set_gateway(gateway: StripeGateway | None) -> None:
    """Replace the cached gateway (tests), or forget it (None) so the next use rebuilds it."""
    global _gateway
    with _lock:
        _gateway = gateway


def reset() -> None:
    set_gateway(None)
