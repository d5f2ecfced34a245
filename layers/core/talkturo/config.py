"""Runtime settings, read from the environment once and cached.

On AWS the template fills these variables; the local platform fills the same ones from the same
template, so code never knows which of the two it runs on (endpoints come from botocore's own
AWS_ENDPOINT_URL variable). A plain pydantic model validates them: no settings framework needed
for reading a handful of variables.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

# Where `talkturo dev` runs the voice service.
LOCAL_VOICE_PORT = 8030
LOCAL_VOICE_SERVICE_URL = f"ws://127.0.0.1:{LOCAL_VOICE_PORT}"


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    table_name: str = Field(default="talkturo-main", alias="TABLE_NAME")
    bucket_name: str = Field(default="talkturo-files", alias="BUCKET_NAME")
    contact_import_queue_url: str = Field(default="", alias="CONTACT_IMPORT_QUEUE_URL")
    number_provisioning_queue_url: str = Field(default="", alias="NUMBER_PROVISIONING_QUEUE_URL")
    dial_queue_url: str = Field(default="", alias="DIAL_QUEUE_URL")
    post_call_queue_url: str = Field(default="", alias="POST_CALL_QUEUE_URL")
    campaign_queue_url: str = Field(default="", alias="CAMPAIGN_QUEUE_URL")
    # Customer events: one message per (event, endpoint) to try now or within seconds.
    event_queue_url: str = Field(default="", alias="EVENT_QUEUE_URL")
    # Assistant test runs: one message per scenario (docs/test-runs.md), and the test minutes
    # an account runs free each UTC day before they are charged as credits.
    test_run_queue_url: str = Field(default="", alias="TEST_RUN_QUEUE_URL")
    test_minutes_free_per_day: int = Field(
        default=30, ge=0, le=100_000, alias="TALKTURO_TEST_MINUTES_FREE_PER_DAY"
    )
    # `credits.low` is sent when a charge takes the balance below this (once per drop).
    credits_low_threshold: str = Field(default="5", alias="TALKTURO_CREDITS_LOW_THRESHOLD")
    # The campaign engine's waits (talkturo.workflows), and a factor on every campaign retry
    # delay (below 1, tests and the benchmark see retries happen in seconds).
    campaign_wake_state_machine_arn: str = Field(
        default="", alias="CAMPAIGN_WAKE_STATE_MACHINE_ARN"
    )
    campaign_delay_scale: float = Field(default=1.0, ge=0, alias="TALKTURO_CAMPAIGN_DELAY_SCALE")
    # Calls a campaign may hold at once over all of an account's campaigns, and how fast the
    # account's campaign dials go to the carrier (its calls-per-second limit).
    campaign_account_max_concurrent: int = Field(
        default=10, ge=1, alias="TALKTURO_CAMPAIGN_ACCOUNT_MAX_CONCURRENT"
    )
    dial_calls_per_second: float = Field(
        default=1.0, gt=0, le=100, alias="TALKTURO_DIAL_CALLS_PER_SECOND"
    )
    # The dead-letter queues, read only by the dead-letter worker (to tell them apart).
    contact_import_dead_letter_queue_url: str = Field(
        default="", alias="CONTACT_IMPORT_DEAD_LETTER_QUEUE_URL"
    )
    number_provisioning_dead_letter_queue_url: str = Field(
        default="", alias="NUMBER_PROVISIONING_DEAD_LETTER_QUEUE_URL"
    )
    dial_dead_letter_queue_url: str = Field(default="", alias="DIAL_DEAD_LETTER_QUEUE_URL")
    post_call_dead_letter_queue_url: str = Field(
        default="", alias="POST_CALL_DEAD_LETTER_QUEUE_URL"
    )
    campaign_dead_letter_queue_url: str = Field(default="", alias="CAMPAIGN_DEAD_LETTER_QUEUE_URL")
    event_dead_letter_queue_url: str = Field(default="", alias="EVENT_DEAD_LETTER_QUEUE_URL")
    test_run_dead_letter_queue_url: str = Field(default="", alias="TEST_RUN_DEAD_LETTER_QUEUE_URL")
    # Where the carrier reaches this deployment's webhooks (/carrier/voice, /carrier/status).
    public_base_url: str = Field(default="http://127.0.0.1:8000", alias="PUBLIC_BASE_URL")
    aws_region: str = Field(default="us-east-1", alias="AWS_REGION")
    # Where the admin secret lives on AWS (Secrets Manager); locally it is given directly.
    admin_secret_arn: str = Field(default="", alias="ADMIN_SECRET_ARN")
    admin_secret: str = Field(default="", alias="TALKTURO_ADMIN_SECRET")
    signup_grant_credits: str = Field(default="10", alias="SIGNUP_GRANT_CREDITS")
    idempotency_ttl_seconds: int = Field(default=86_400, alias="IDEMPOTENCY_TTL_SECONDS")
    # The carrier (Twilio). On AWS the credentials live in a Secrets Manager secret holding
    # {"account_sid", "auth_token"}; locally they are given directly. An empty API base URL
    # means the real Twilio; the local platform points it at the carrier simulator.
    twilio_secret_arn: str = Field(default="", alias="TWILIO_SECRET_ARN")
    twilio_account_sid: str = Field(default="", alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: str = Field(default="", alias="TWILIO_AUTH_TOKEN", repr=False)
    twilio_api_base_url: str = Field(default="", alias="TWILIO_API_BASE_URL")
    # Payments (Stripe). On AWS the key and the webhook secrets live in a Secrets Manager
    # secret holding {"secret_key", "webhook_secrets": [...]}; locally they are given directly
    # (the webhook secrets comma-separated: several while one is rotated). An empty API base
    # URL means Stripe itself; the local platform points it at the Stripe simulator.
    stripe_secret_arn: str = Field(default="", alias="STRIPE_SECRET_ARN")
    stripe_secret_key: str = Field(default="", alias="STRIPE_SECRET_KEY", repr=False)
    stripe_webhook_secrets: str = Field(default="", alias="STRIPE_WEBHOOK_SECRETS", repr=False)
    stripe_api_base_url: str = Field(default="", alias="STRIPE_API_BASE_URL")
    # Verified Stripe events, one message each, for the billing worker.
    billing_event_queue_url: str = Field(default="", alias="BILLING_EVENT_QUEUE_URL")
    billing_event_dead_letter_queue_url: str = Field(
        default="", alias="BILLING_EVENT_DEAD_LETTER_QUEUE_URL"
    )
    # Where Checkout sends the buyer afterwards when the request names no URL (empty: the
    # platform's own page, {PUBLIC_BASE_URL}/billing/return).
    checkout_return_url: str = Field(default="", alias="TALKTURO_CHECKOUT_RETURN_URL")
    # The voice service's WebSocket base (the carrier's media stream goes to {url}/media); empty
    # means the local default. Tokens naming a call are signed with the voice token secret
    # (on AWS a generated Secrets Manager secret, VOICE_TOKEN_SECRET_ARN).
    voice_service_url: str = Field(default="", alias="VOICE_SERVICE_URL")
    voice_token_secret_arn: str = Field(default="", alias="VOICE_TOKEN_SECRET_ARN")
    voice_token_secret: str = Field(default="", alias="VOICE_TOKEN_SECRET", repr=False)

    @property
    def knows_public_url(self) -> bool:
        """Whether PUBLIC_BASE_URL is set here (not the default): the carrier's callbacks can be
        named, so this process may place calls itself. On AWS the carrier webhooks' function
        cannot name its own API: without an explicit public URL it leaves dials to the dialer."""
        return "public_base_url" in self.model_fields_set

    @property
    def voice_stream_url(self) -> str:
        return (self.voice_service_url or LOCAL_VOICE_SERVICE_URL).rstrip("/") + "/media"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.model_validate(dict(os.environ))
