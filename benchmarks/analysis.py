"""`python -m benchmarks.analysis [--calls N] [--model-ms MS]`: hang-up → call.analyzed.

Calls end one after another on the AWS emulator (in this process); the post-call worker is the
very Lambda handler, fed by the local platform's SQS runner, and the event-delivery worker sends
each event to a small receiver on loopback, as a customer's endpoint gets it. Each call is a
conversation in which the caller gives an email and a meeting day, to a contact, with the
assistant's `analysis` asking for both (email, custom date field meeting_day), dispositions and
success criteria. Per call: from the hang-up (the voice session saving the transcript and
closing) to `call.analyzed` written (the event's `created_at`) and to its arrival at the
receiver.

Two paths:
- a model of fixed latency: an OpenAI-compatible fake (`tests/providers/fake_llm_servers.py`)
  answering each structured request after `--model-ms`, reached through `LOCAL_LLM_BASE_URL`
  (the analysis's real model path, JSON mode, validated and evidence-checked);
- offline: the development model and the deterministic extractor (no model request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks._aws import local_aws, sign_up

CALLS = 50
MODEL_MS = 300
WAIT_SECONDS = 60.0
EMAIL_TURN = "Sure, it is jane dot doe at example dot com."
DAY_TURN = "Next Tuesday works for the meeting."
ANALYSIS = {
    "dispositions": ["booked", "callback", "not_interested"],
    "create_missing_fields": True,
    "extraction_fields": [
        {"key": "email", "description": "The caller's email address"},
        {"key": "meeting_day", "description": "The day the caller wants to meet", "type": "date"},
    ],
}
CRITERIA = "The caller gave an email address and agreed on a day for a meeting."


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Receiver:
    """A webhook endpoint on loopback: when each call's call.analyzed arrived."""

    arrived: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def take(self, body: bytes) -> None:
        at = time.time()
        event = json.loads(body)
        if event.get("type") != "call.analyzed":
            return
        with self.changed:
            self.arrived.setdefault(event["data"]["call"]["id"], at)
            self.changed.notify_all()

    def wait_for(self, call_id: str, within: float) -> float:
        deadline = time.monotonic() + within
        with self.changed:
            while call_id not in self.arrived:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"call.analyzed for {call_id} did not arrive")
                self.changed.wait(left)
            return self.arrived[call_id]


@contextmanager
def _receiving(receiver: Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.take(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events"
    finally:
        server.shutdown()
        server.server_close()


def model_answer() -> dict[str, Any]:
    """What a careful model answers for the benchmark's conversation (JSON mode)."""
    return {
        "summary": "The caller gave their email address and chose next Tuesday for a meeting.",
        "success": {"passed": True, "reason": "An email and a meeting day were agreed."},
        "disposition": "booked",
        "extracted": [
            {"field": "contact.email", "value": "jane.doe@example.com", "quote": EMAIL_TURN},
            {"field": "contact.meeting_day", "value": "next Tuesday", "quote": DAY_TURN},
        ],
    }


@contextmanager
def fake_model(latency_ms: int, answers: int) -> Iterator[str]:
    """An OpenAI-compatible fake answering each structured request after `latency_ms`; its
    base URL. `answers` replies are scripted."""
    from fastapi import Request, Response

    from tests.asgi_server import served
    from tests.providers.fake_llm_servers import OpenAIFake

    fake = OpenAIFake()
    for _ in range(answers):
        fake.reply_whole(fake.completion(json.dumps(model_answer())))
    app = fake.app()

    @app.middleware("http")
    async def slow(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        await asyncio.sleep(latency_ms / 1000)
        return await call_next(request)

    with served(app) as url:
        yield url
    if fake.problems:
        raise RuntimeError(f"the fake model refused requests: {fake.problems}")


def _conversation() -> list[Any]:
    from talkturo.domain.calls import TranscriptMessage

    lines = [
        ("assistant", "Hi, this is Ada from Northwind. Could I get your email address?"),
        ("user", EMAIL_TURN),
        ("assistant", "Thanks. Which day suits you for a meeting?"),
        ("user", DAY_TURN),
        ("assistant", "Great, next Tuesday it is. Goodbye."),
    ]
    return [
        TranscriptMessage(role=role, text=text, start_ms=i * 1500, end_ms=i * 1500 + 1200)
        for i, (role, text) in enumerate(lines)
    ]


def _call(account_id: str, assistant_id: str, contact_id: str, phone: str) -> str:
    """A call in progress with the contact, its voice session connected."""
    from talkturo.domain.calls import CallRecord
    from talkturo.domain.common import utcnow
    from talkturo.ids import new_id
    from talkturo.store import calls as call_store

    now = utcnow()
    record = CallRecord(
        id=new_id("call"),
        direction="inbound",
        status="in_progress",
        assistant_id=assistant_id,
        phone_number_id="pn_bench",
        from_number=phone,
        to_number="+14155550100",
        contact_id=contact_id,
        created_at=now - timedelta(seconds=8),
        answered_at=now - timedelta(seconds=7),
        voice_session_started=True,
    )
    call_store.create(account_id, record)
    return record.id


def _hang_up(account_id: str, call_id: str) -> datetime:
    """What the voice session does when the caller hangs up: save, close, end the call."""
    from talkturo.domain.calls import CallEvent
    from talkturo.domain.common import utcnow
    from talkturo.services import calls

    at = utcnow()
    calls.save_conversation(account_id, call_id, messages=_conversation(), recording_wav=None)
    calls.close_session(
        account_id,
        call_id,
        stream_sid=f"MZ{call_id}",
        charge=Decimal("0.1200"),
        billed_seconds=7,
        recorded=False,
        bookings=[],
        end=CallEvent(at=at, status="ended", outcome="answered", ended_reason="caller_hung_up"),
    )
    return at


@dataclass
class Figures:
    label: str
    written_ms: list[float] = field(default_factory=list)
    delivered_ms: list[float] = field(default_factory=list)
    written_fields: int = 0
    calls: int = 0

    def line(self) -> str:
        w, d = self.written_ms, self.delivered_ms
        return (
            f"  {self.label:<32} {self.calls} calls: call.analyzed written "
            f"p50 {_percentile(w, 0.5):.0f} ms, "
            f"p95 {_percentile(w, 0.95):.0f} ms; delivered p50 {_percentile(d, 0.5):.0f} ms, "
            f"p95 {_percentile(d, 0.95):.0f} ms (mean {statistics.mean(d):.0f}); "
            f"{self.written_fields}/{2 * self.calls} CRM fields written"
        )


def measure(label: str, calls: int, environment: dict[str, str], *, stack_name: str) -> Figures:
    """`calls` calls ended one after another, each analysed before the next hangs up."""
    from talkturo import config
    from talkturo.domain.contacts import ContactCreate
    from talkturo.domain.events import WebhookEndpointCreate
    from talkturo.local.runner import SqsRunner
    from talkturo.services import assistants, contacts, events
    from talkturo.store import calls as call_store

    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    os.environ["TALKTURO_OUTBOUND_ALLOW_HTTP"] = "127.0.0.0/8"
    config.get_settings.cache_clear()
    figures = Figures(label)
    receiver = Receiver()
    try:
        with local_aws(stack_name) as stack, _receiving(receiver) as url:
            account_id, _ = sign_up("analysis bench")
            assistant = assistants.create_assistant(
                account_id,
                {"template": "custom", "success_criteria": CRITERIA, "analysis": ANALYSIS},
            )
            events.create_endpoint(
                account_id, WebhookEndpointCreate(url=url, event_types=["call.analyzed"])
            )
            runner = SqsRunner(stack, wait_seconds=1)
            runner.start()
            try:
                for n in range(calls + 1):  # the first call warms the worker up, unmeasured
                    phone = f"+1206555{n:04d}"
                    contact = contacts.create(
                        account_id, ContactCreate(first_name=f"Caller {n}", phone=phone)
                    )
                    call_id = _call(account_id, assistant.id, contact.id, phone)
                    hung_up = _hang_up(account_id, call_id)
                    arrived = receiver.wait_for(call_id, WAIT_SECONDS)
                    if n == 0:
                        continue
                    record = call_store.get(account_id, call_id)
                    assert record.analysis is not None and record.analysis.analyzed_at
                    figures.calls += 1
                    figures.written_fields += record.analysis.fields_written
                    written = record.analysis.analyzed_at - hung_up
                    figures.written_ms.append(written.total_seconds() * 1000)
                    figures.delivered_ms.append((arrived - hung_up.timestamp()) * 1000)
            finally:
                runner.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        config.get_settings.cache_clear()
    return figures


def run(calls: int = CALLS, model_ms: int = MODEL_MS) -> list[Figures]:
    import logging

    from talkturo import logs

    logs.logger.setLevel("WARNING")
    logging.getLogger("local.runner").setLevel(logging.ERROR)
    print(f"\nPost-call analysis: hang-up → call.analyzed, {calls} calls one after another")
    results = []
    with fake_model(model_ms, answers=calls + 1) as url:
        model = {
            "TALKTURO_OFFLINE_PROVIDERS": "1",
            "LOCAL_LLM_BASE_URL": f"{url}/v1",
            "LOCAL_LLM_API_KEY": "test-key",
            "LOCAL_LLM_MODEL": "bench-model",
        }
        results.append(
            measure(
                f"model answering in {model_ms} ms", calls, model, stack_name="bench-analysis-model"
            )
        )
        print(results[-1].line())
    offline = {"TALKTURO_OFFLINE_PROVIDERS": "1", "LOCAL_LLM_BASE_URL": ""}
    results.append(
        measure(
            "offline (extractor, no model)", calls, offline, stack_name="bench-analysis-offline"
        )
    )
    print(results[-1].line())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.analysis", description=__doc__)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--model-ms", type=int, default=MODEL_MS)
    options = parser.parse_args()
    run(options.calls, options.model_ms)


if __name__ == "__main__":
    main()
