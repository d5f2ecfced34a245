"""The platform's carrier, built on first use from the settings and kept for the process.

Credentials: on AWS from the Secrets Manager secret named by TWILIO_SECRET_ARN (JSON
{"account_sid", "auth_token"}, read through powertools' parameters with caching); locally from
TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN. TWILIO_API_BASE_URL (empty: the real Twilio) points the
SDK at another server, such as the local carrier simulator. Secrets are never logged.
"""

from __future__ import annotations

import threading
from typing import Any

from talkturo.carrier.base import Carrier, CarrierNotConfigured
from talkturo.config import Settings, get_settings

SECRET_MAX_AGE_SECONDS = 300

_lock = threading.Lock()
_carrier: Carrier | None = None


def _credentials(settings: Settings) -> tuple[str, str]:
    if settings.twilio_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        secret: Any = parameters.get_secret(
            settings.twilio_secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS
        )
        if not isinstance(secret, dict) or not secret.get("account_sid"):
            raise CarrierNotConfigured(
                "the Twilio secret must hold a JSON object with account_sid and auth_token"
            )
        return str(secret["account_sid"]), str(secret.get("auth_token") or "")
    return settings.twilio_account_sid, settings.twilio_auth_token


def get_carrier() -> Carrier:
    """The carrier adapter for this process (built lazily, then cached)."""
    global _carrier
    with _lock:
        if _carrier is None:
            settings = get_settings()
            account_sid, auth_token = _credentials(settings)
            if not account_sid or not auth_token:
                raise CarrierNotConfigured(
                    "no carrier credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
                    "(or TWILIO_SECRET_ARN on AWS)"
                )
            from talkturo.carrier.twilio import TwilioCarrier

            _carrier = TwilioCarrier(
                account_sid, auth_token, api_base_url=settings.twilio_api_base_url
            )
        return _carrier


def webhook_auth_token() -> str:
    """The auth token the carrier signs its webhooks with (the same credentials get_carrier
    uses). Never logged; CarrierNotConfigured when there is none."""
    _, auth_token = _credentials(get_settings())
    if not auth_token:
        raise CarrierNotConfigured("no carrier auth token to check webhook signatures with")
    return auth_token


def set_carrier(carrier: Carrier | None) -> None:
    """Replace the cached carrier (tests), or forget it (None) so the next use rebuilds it."""
    global _carrier
    with _lock:
        _carrier = carrier


def reset() -> None:
    set_carrier(None)
