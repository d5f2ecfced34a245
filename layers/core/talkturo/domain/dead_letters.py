"""Dead letters: queue messages that failed every delivery, and what was done about each.

A message lands in its queue's dead-letter queue after `maxReceiveCount` failed deliveries
(template.yaml). The dead-letter worker ends the job it stood for, so that nothing stays
`processing`, `purchasing` or `queued` forever, and keeps a record of it for the operator.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

DeadLetterQueue = Literal[
    "contact_import",
    "number_provisioning",
    "dial",
    "post_call",
    "campaign",
    "event",
    "billing",
    "test_run",
    "unknown",
]
QUEUES: tuple[DeadLetterQueue, ...] = (
    "contact_import",
    "number_provisioning",
    "dial",
    "post_call",
    "campaign",
    "event",
    "billing",
    "test_run",
)
DeadLetterAction = Literal["ended", "already_ended", "recorded"]

# A record is kept this long (the dead-letter queues keep a message 14 days too).
RETENTION_DAYS = 14
EXCERPT_MAX = 300
# Values of fields with such names never reach a log line or a record.
_SECRET_NAME = re.compile(r"secret|token|password|passwd|auth|credential|api_?key", re.IGNORECASE)


class DeadLetter(BaseModel):
    object: Literal["dead_letter"] = "dead_letter"
    id: str = Field(description="The SQS message id (the same dead letter is recorded once).")
    queue: DeadLetterQueue = Field(description="The queue whose job it was.")
    receive_count: int = Field(description="Deliveries of the message, as SQS counted them.")
    sent_at: datetime | None = Field(
        default=None, description="When the job was first queued (SQS keeps it in the DLQ)."
    )
    dead_at: datetime = Field(description="When the dead-letter worker took it.")
    account_id: str | None = None
    job: str | None = Field(
        default=None, description="What the job was for: an import, number, call or campaign id."
    )
    action: DeadLetterAction = Field(
        description="`ended`: the job was ended here; `already_ended`: it had ended already; "
        "`recorded`: nothing to end (no worker for the queue, a job that went on after all, or "
        "not a valid job)."
    )
    reason: str = Field(description="What happened, as the job's own record says it.")
    body_excerpt: str = Field(description="The message, secrets masked and cut short.")


class CampaignJobRef(BaseModel):
    """What every campaign job names (kick, wake, build and call_ended alike): enough to say
    whose campaign a dead letter was for."""

    type: str
    account_id: str
    campaign_id: str


class Outcome(BaseModel):
    """What ending one job did: the dead letter's `job`, `account_id`, `action`, `reason`."""

    account_id: str | None = None
    job: str | None = None
    action: DeadLetterAction
    reason: str


def excerpt(body: str) -> str:
    """The body for logs and records: JSON with secret-named values masked, cut short."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return f"<not JSON, {len(body)} characters>"
    text = json.dumps(_masked(parsed), separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= EXCERPT_MAX else text[: EXCERPT_MAX - 1] + "…"


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "***" if _SECRET_NAME.search(str(key)) else _masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value
