"""Customer events: how many one delivery worker sends per second to a local receiver.

Emits N events (200, or `TALKTURO_BENCH_EVENTS`) to one endpoint of one account on the local
platform's emulator, then runs the deployed handler of EventDeliveryFunction (one worker, the
template's batch size) on the event queue until every delivery is made: each attempt claimed,
signed, posted through the SSRF guard to a receiver on loopback that answers 204, logged.
Prints what emitting cost a event and the deliveries per second of the worker.

`python -m benchmarks.events` runs it alone.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks._aws import local_aws, sign_up

EVENTS = int(os.environ.get("TALKTURO_BENCH_EVENTS", "200"))


class _Receiver(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _Receiver.lock:
            _Receiver.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _sqs_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def run(events: int = EVENTS) -> None:
    import boto3

    from talkturo.local.runner import LambdaContext, load_handler
    from talkturo.logs import logger

    logger.setLevel("WARNING")
    print(f"\nCustomer events: {events} events, one endpoint, one delivery worker (emulator)\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    try:
        with local_aws("talkturo-bench-events") as stack:
            from talkturo.domain.events import WebhookEndpointCreate
            from talkturo.services import events as service

            account_id, _ = sign_up("bench events")
            service.create_endpoint(account_id, WebhookEndpointCreate(url=url))
            started = time.perf_counter()
            for n in range(events):
                service.emit(account_id, "credits.low", {"n": n}, key=f"bench:{n}")
            emitting = time.perf_counter() - started

            function = stack.functions["EventDeliveryFunction"]
            handler = load_handler(function)
            batch = next(s.batch_size for s in function.sqs_events)
            sqs = boto3.client("sqs", region_name="us-east-1")
            queue, arn = stack.physical["EventQueue"], stack.arns["EventQueue"]
            started = time.perf_counter()
            deadline = time.monotonic() + 600
            while _Receiver.received < events and time.monotonic() < deadline:
                answer = sqs.receive_message(
                    QueueUrl=queue, MaxNumberOfMessages=batch, WaitTimeSeconds=1
                )
                messages = answer.get("Messages", [])
                if not messages:
                    continue
                context = LambdaContext(function.logical_id, arn, 1024, function.timeout_seconds)
                result = handler(_sqs_event(messages, arn), context)
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
                done = [m for m in messages if m["MessageId"] not in failed]
                if done:
                    sqs.delete_message_batch(
                        QueueUrl=queue,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(done)
                        ],
                    )
            delivering = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
    print(f"  emit              {emitting * 1000 / events:.1f} ms an event ({emitting:.2f} s)")
    if _Receiver.received < events:
        print(f"  delivered         {_Receiver.received} of {events} (the rest never came)")
        return
    print(f"  delivered         {events} in {delivering:.2f} s")
    print(f"  one worker        {events / delivering:.1f} deliveries a second (batch {batch})")


if __name__ == "__main__":
    run()
