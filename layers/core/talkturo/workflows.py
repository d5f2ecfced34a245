"""Waits of any length for the campaign engine, on Step Functions (the only code touching it).

`schedule_wake(name, at, job)` starts one execution of the campaign wake state machine
(statemachines/campaign_wake.asl.json): it waits until `at`, then puts `job` on the campaign
queue. SQS delays stop at 15 minutes; a scheduled start, a call window that opens again or a
retry delay may be days away. The execution's name makes it idempotent: the same wake asked
for twice (same name) is one execution, so one job. A wake already due goes to the queue at
once, with no execution.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from talkturo import aws, queues
from talkturo.config import get_settings
from talkturo.domain.common import utcnow
from talkturo.logs import logger

# Step Functions takes up to 80 characters for a name; these are the ones always safe in one.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# A wake this close is sent at once: an execution would not wait any shorter.
DUE_WITHIN = timedelta(seconds=1)


def wake_at(at: datetime) -> str:
    """`at` as the state machine's Wait reads it: UTC, whole seconds, rounded up (never early)."""
    moment = at.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def wake_input(at: datetime, job: dict[str, Any]) -> dict[str, Any]:
    """The execution's input (statemachines/README.md)."""
    return {"wake_at": wake_at(at), "message": job}


def schedule_wake(name: str, at: datetime, job: dict[str, Any]) -> None:
    """Put `job` on the campaign queue at `at` (timezone-aware, within a year: a Standard
    execution's longest life), once per `name`.

    The name must say everything the job does (`<campaign>-<reason>-<epoch seconds>`): a second
    request under a name already used is dropped, whatever its job.
    """
    if not _NAME.match(name):
        raise ValueError(f"a wake's name is 1 to 80 of A-Z a-z 0-9 - _, not {name!r}")
    if at.tzinfo is None:
        raise ValueError("a wake's time must be timezone-aware")
    settings = get_settings()
    if at - utcnow() <= DUE_WITHIN:
        queues.send(settings.campaign_queue_url, job)
        return
    machine = settings.campaign_wake_state_machine_arn
    if not machine:
        raise RuntimeError(
            "the campaign wake state machine is not configured "
            "(CAMPAIGN_WAKE_STATE_MACHINE_ARN is empty)"
        )
    try:
        aws.client("stepfunctions").start_execution(
            stateMachineArn=machine, name=name, input=json.dumps(wake_input(at, job))
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        # Asked for before: that execution sends the job (or has sent it).
        logger.debug("wake already scheduled", extra={"wake": name})
