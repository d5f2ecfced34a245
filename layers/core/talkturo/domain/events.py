"""Events to the customer (SPEC §9): their types and payloads, webhook endpoints, deliveries,
the Standard Webhooks signature and the retry schedule, as data.

An event is `{id, type, created_at, data}`. Its id derives from the natural key its emitter
gives (`call.ended:<call id>` …), so an emitter that runs twice makes the same event, and a
receiver sees the same `webhook-id` on every retry and replay of it. One delivery exists per
(event, endpoint); each try of it is an attempt in its log.

Pure: no I/O here (the signature is hmac over bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator
from ulid import ULID

from talkturo.domain.common import Name, Resource

# --------------------------------------------------------------------------- types

SubscribableType = Literal[
    "call.started",
    "call.ended",
    "call.analyzed",
    "campaign.status_changed",
    "number.status_changed",
    "credits.low",
]
# `webhook.test` goes only to the endpoint whose test route was called, whatever it subscribes.
EventType = Literal[SubscribableType, "webhook.test"]
SUBSCRIBABLE_TYPES: tuple[str, ...] = get_args(SubscribableType)
EVENT_TYPES: tuple[str, ...] = (*SUBSCRIBABLE_TYPES, "webhook.test")

# --------------------------------------------------------------------------- the schedule

# Seconds before each attempt, counted from the failure of the one before (the first goes at
# once): Svix's schedule, 8 attempts over about 27.6 hours.
RETRY_SCHEDULE_SECONDS: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
# Waits up to this long go on the queue as an SQS delay; longer ones wait in the table (the due
# index the sweeper reads every minute).
QUEUE_DELAY_MAX_SECONDS = 15
# An endpoint whose every attempt has failed for this long is disabled.
DISABLE_AFTER = timedelta(days=5)
# After a rotation the previous secret keeps signing (a second signature) this long.
ROTATION_OVERLAP = timedelta(hours=24)
# One attempt's whole exchange (resolution, connection, answer) is bounded by this.
REQUEST_TIMEOUT_SECONDS = 10.0
# A claimed attempt whose worker died is tried again after this (the sweeper finds it due).
CLAIM_LEASE = timedelta(seconds=REQUEST_TIMEOUT_SECONDS + 60)
# How much of a receiver's answer the log keeps (and reads: the rest is not downloaded).
RESPONSE_EXCERPT_BYTES = 2048
# The attempts a delivery's log keeps (8 scheduled, then replays): the newest ones.
MAX_LOGGED_ATTEMPTS = 20
MAX_ENDPOINTS_PER_ACCOUNT = 20
# Events and deliveries are kept this long (the table's TTL removes them).
RETENTION_DAYS = 30
# An event's body stays well under DynamoDB's 400 KB item limit.
MAX_EVENT_BYTES = 300_000

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_BYTES = 24
SIGNATURE_VERSION = "v1"


def next_delay(attempts_made: int) -> int | None:
    """Seconds to wait before the next attempt after `attempts_made` failed ones; None when the
    schedule is used up."""
    if attempts_made >= len(RETRY_SCHEDULE_SECONDS):
        return None
    return RETRY_SCHEDULE_SECONDS[attempts_made]


# --------------------------------------------------------------------------- events


class Event(BaseModel):
    """What an endpoint receives, as the JSON body of a POST."""

    id: str = Field(description="`evt_…`; also the `webhook-id` header, the same on every retry.")
    type: EventType
    created_at: datetime
    data: dict[str, Any]

    def body(self) -> str:
        """The exact bytes that are signed and sent (compact JSON, UTF-8)."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)


def event_id(account_id: str, key: str) -> str:
    """The id of the event an emitter names with `key`: the same key in the same account is
    the same event, however often it is emitted."""
    digest = hashlib.sha256(f"{account_id}\n{key}".encode()).digest()
    return f"evt_{ULID.from_bytes(digest[:16])}"


# --------------------------------------------------------------------------- secrets, signing


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as Standard Webhooks signs."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    secrets_in_use: list[str], message_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The request headers of an attempt: one signature per secret in use (space-separated,
    during a rotation two)."""
    return {
        "content-type": "application/json",
        "user-agent": "Talkturo-Webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id, timestamp, body) for secret in secrets_in_use
        ),
    }


# --------------------------------------------------------------------------- endpoints


class WebhookEndpointCreate(Resource):
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="Where events are POSTed: an https URL to a public address.",
    )
    description: Name = Field(default="", max_length=500)
    event_types: list[SubscribableType] | None = Field(
        default=None,
        description="The event types to receive; null or omitted: every type.",
    )
    enabled: bool = True

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one event type, or null for every type")
        return list(dict.fromkeys(value))


class WebhookEndpointUpdate(Resource):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    description: Name | None = Field(default=None, max_length=500)
    event_types: list[SubscribableType] | None = Field(
        default=None, description="null: every type."
    )
    enabled: bool | None = Field(
        default=None, description="false pauses deliveries; true re-enables a disabled endpoint."
    )

    @field_validator("url", "description", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return WebhookEndpointCreate._types(value)


DisabledReason = Literal["paused", "gone", "failing"]


class WebhookEndpoint(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    url: str
    description: str = ""
    event_types: list[SubscribableType] | None = Field(
        default=None, description="null: every type."
    )
    enabled: bool
    disabled_reason: DisabledReason | None = Field(
        default=None,
        description="Why deliveries stopped: `paused` (by you), `gone` (the endpoint answered "
        "410), `failing` (every attempt failed for 5 days).",
    )
    disabled_message: str | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = Field(
        default=None, description="The first failed attempt since the last success."
    )
    secret_rotated_at: datetime | None = None
    created_at: datetime
    updated_at: datetime

    def wants(self, event_type: str) -> bool:
        return self.enabled and (self.event_types is None or event_type in self.event_types)


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(description="`whsec_…`: verifies signatures. Shown here and on reveal.")


class WebhookSecret(BaseModel):
    object: Literal["webhook_endpoint_secret"] = "webhook_endpoint_secret"
    endpoint_id: str
    secret: str = Field(description="The secret signing every event now (`whsec_…`).")
    previous_secret_expires_at: datetime | None = Field(
        default=None,
        description="Until then the previous secret signs too (a second signature).",
    )


class SigningSecret(BaseModel):
    secret: str
    expires_at: datetime | None = None


class EndpointRecord(WebhookEndpoint):
    """What is stored: the endpoint and its secrets (the current one first)."""

    secrets: list[SigningSecret]

    def public(self) -> WebhookEndpoint:
        return WebhookEndpoint.model_validate(self.model_dump(exclude={"secrets"}))

    def with_secret(self) -> WebhookEndpointWithSecret:
        return WebhookEndpointWithSecret(
            **self.public().model_dump(), secret=self.secrets[0].secret
        )

    def secrets_at(self, now: datetime) -> list[str]:
        return [s.secret for s in self.secrets if s.expires_at is None or s.expires_at > now]


# --------------------------------------------------------------------------- deliveries

DeliveryStatus = Literal["pending", "delivered", "failed"]
AttemptTrigger = Literal["scheduled", "replay"]


class DeliveryAttempt(BaseModel):
    attempt: int = Field(description="1 for the first try; replays continue the count.")
    trigger: AttemptTrigger = "scheduled"
    at: datetime
    url: str
    request_headers: dict[str, str]
    response_status: int | None = None
    response_body_excerpt: str = Field(
        default="", description=f"At most {RESPONSE_EXCERPT_BYTES} bytes of the answer."
    )
    response_truncated: bool = False
    latency_ms: int | None = None
    error: str | None = None


class WebhookDelivery(BaseModel):
    """One event on its way to one endpoint."""

    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    endpoint_id: str
    event_id: str
    event_type: EventType
    status: DeliveryStatus
    attempt_count: int = 0
    next_attempt_at: datetime | None = Field(
        default=None, description="When the next attempt is due (pending deliveries)."
    )
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    attempts: list[DeliveryAttempt] = Field(
        default_factory=list, description="The newest attempts, oldest first."
    )


class WebhookDeliveryWithBody(WebhookDelivery):
    request_body: str = Field(description="The exact body every attempt sent (the event).")


class DeliveryJob(BaseModel):
    """A message on the event queue: try this delivery, if it still has made `attempt` tries."""

    account_id: str
    endpoint_id: str
    delivery_id: str
    attempt: int
    trigger: AttemptTrigger = "scheduled"


def excerpt(body: bytes) -> str:
    return body[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")


def retention_until(now: datetime) -> int:
    return int((now + timedelta(days=RETENTION_DAYS)).timestamp())
