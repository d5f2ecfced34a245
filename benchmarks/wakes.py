"""Campaign wakes on the local platform's emulator: a burst of wakes due in the same second.

Schedules N wakes (200, or `TALKTURO_BENCH_WAKES`) through `talkturo.workflows.schedule_wake`,
each its own execution of the template's wake state machine, all due a few seconds ahead, then
receives their jobs from the campaign queue. Prints how long scheduling took and, from the
moment they were due, when the first and the last job arrived (wakes are due at whole
seconds: up to 1 s of that is the rounding up of their time).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

from benchmarks._aws import local_aws

WAKES = int(os.environ.get("TALKTURO_BENCH_WAKES", "200"))
AHEAD_SECONDS = 8


def run(wakes: int = WAKES) -> None:
    import boto3

    from talkturo import workflows

    print(f"\nCampaign wakes: {wakes} executions due in the same second (emulator)\n")
    with local_aws("talkturo-bench-wakes") as stack:
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = stack.physical["CampaignQueue"]
        at = datetime.now(UTC) + timedelta(seconds=AHEAD_SECONDS)
        started = time.perf_counter()
        for n in range(wakes):
            job = {"kind": "wake", "account_id": "acct_bench", "campaign_id": f"cmp_{n}"}
            workflows.schedule_wake(f"cmp_{n}-retry-{int(at.timestamp())}", at, job)
        scheduling = time.perf_counter() - started
        threads = threading.active_count()
        due = datetime.fromisoformat(workflows.wake_at(at).replace("Z", "+00:00")).timestamp()
        arrivals: list[float] = []
        deadline = time.monotonic() + AHEAD_SECONDS + 120
        while len(arrivals) < wakes and time.monotonic() < deadline:
            answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5)
            for message in answer.get("Messages", []):
                arrivals.append(time.time())
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    print(f"  scheduling        {scheduling * 1000 / wakes:.1f} ms a wake ({scheduling:.2f} s)")
    print(f"  threads waiting   {threads} (moto runs each execution in threads of its own)")
    if len(arrivals) < wakes:
        print(f"  jobs received     {len(arrivals)} of {wakes} (the rest never came)")
        return
    print(f"  first job         {arrivals[0] - due:+.2f} s after its time")
    print(f"  last job          {arrivals[-1] - due:+.2f} s after its time")
