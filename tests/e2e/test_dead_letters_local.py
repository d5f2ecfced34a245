"""Under `talkturo dev` the dead-letter worker takes what lands in a dead-letter queue, and
`talkturo dead-letters` shows it."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import LocalPlatform
from tests.e2e.test_calls_local import eventually

pytestmark = pytest.mark.e2e


def test_a_dead_letter_is_handled_and_listed_by_the_command(local_platform: LocalPlatform) -> None:
    sqs = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=local_platform.aws_endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    (dlq_url,) = [
        url
        for url in sqs.list_queues().get("QueueUrls", [])
        if url.endswith("-PostCallDeadLetterQueue")
    ]
    job = {"account_id": "acct_e2e", "call_id": "call_01JE2EDEADLETTER0000000000"}
    sent = sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(job))["MessageId"]

    def listed() -> list[dict[str, Any]]:
        done = local_platform.cli("dead-letters", "--queue", "post_call", "--json")
        assert done.returncode == 0, done.stderr
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return found

    letters = eventually(
        listed, lambda found: any(d["id"] == sent for d in found), 30, "the dead letter"
    )
    (letter,) = [d for d in letters if d["id"] == sent]
    # A post-call job that never succeeded ends the call's analysis as failed.
    assert (letter["job"], letter["action"]) == (job["call_id"], "ended")
    table = local_platform.cli("dead-letters", "--queue", "post_call")
    assert job["call_id"] in table.stdout
    assert "dead letter" in local_platform.log()
