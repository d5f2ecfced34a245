"""Campaigns: the engine at 100 and 1,000 contacts, and a campaign through `talkturo dev`.

Part 1, the engine on the emulator (in this process): a campaign of N contacts (100, then
1,000, or `TALKTURO_BENCH_CAMPAIGN_CONTACTS`) at concurrency 10 with mixed callees (human, no
answer, busy, voicemail, failing) and 5 % of the contacts marked DNC once it runs. Three
campaign workers and two dialers race on the queues, as Lambda's concurrent invocations would;
an in-memory carrier keeps each call live for a few milliseconds and then reports its end.
Prints the most simultaneous calls the carrier ever held (must equal the limit, never above),
dials outside the floor or to a DNC contact (must be 0), attempts over the limit (must be 0),
DynamoDB reads per dispatch (it must stay flat as the campaign grows) and wall time.

Part 2, the latency a user sees (`python -m benchmarks campaign`, after part 1): `talkturo dev`
as a user starts it, a campaign of 40 contacts through the carrier simulator and the voice
service: start → first call (p50/p95 over 5 campaigns), and a call's end reported by the
carrier → the next call claimed in its slot (p50/p95).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx

from benchmarks._aws import local_aws, sign_up

SIZES = [int(n) for n in os.environ.get("TALKTURO_BENCH_CAMPAIGN_CONTACTS", "100,1000").split(",")]
CONCURRENCY = 10
BEHAVIOURS = ["human"] * 10 + ["no_answer"] * 3 + ["busy"] * 3 + ["voicemail"] * 2 + ["failed"] * 2
ZONES = [
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
]
HOLD_SECONDS = 2.0  # how long the in-memory carrier keeps a call (1 to 3 s)
TARGET_FIRST_DIAL_P95 = 2.0
TARGET_REFILL_P95 = 1.0


def awake_zone() -> str:
    """A timezone where it is between 10:00 and 18:00 now: inside the floor for a while."""
    now = datetime.now(UTC)
    return next(z for z in ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour < 18)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- part 1


@dataclass
class Network:
    """An in-memory carrier: calls live until `step` ends them, as each callee behaves."""

    behaviours: dict[str, str]
    # call id → (sid, to, when the carrier reports its end: a few hundred ms after the dial)
    live: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    peak: int = 0
    dials: list[tuple[str, str, datetime]] = field(default_factory=list)  # call, to, when
    lock: threading.Lock = field(default_factory=threading.Lock)
    count: int = 0

    def place_call(self, request: Any) -> Any:
        from talkturo.domain.telephony import PlacedCall

        call_id = parse_qs(urlsplit(request.answer_url).query)["call"][0]
        with self.lock:
            self.count += 1
            sid = f"CA{self.count:032d}"
            hold = HOLD_SECONDS * (0.5 + random.random())
            self.live[call_id] = (sid, request.to, time.monotonic() + hold)
            self.peak = max(self.peak, len(self.live))
            self.dials.append((call_id, request.to, datetime.now(UTC)))
        return PlacedCall(carrier_sid=sid, status="queued")

    def end_some(self, account_id: str) -> int:
        """Report the end of every live call (the carrier's final status callback)."""
        from talkturo.domain.calls import CallEvent, event_of_twilio
        from talkturo.services import calls

        now_s = time.monotonic()
        with self.lock:
            ending = [(c, to) for c, (_, to, at) in self.live.items() if at <= now_s]
        for call_id, to in ending:
            behaviour = self.behaviours.get(to, "human")
            now = datetime.now(UTC)
            if behaviour in ("human", "voicemail"):
                calls.record_event(account_id, call_id, CallEvent(at=now, status="in_progress"))
                amd = "machine_end_beep" if behaviour == "voicemail" else "human"
                calls.record_event(
                    account_id, call_id, event_of_twilio(None, at=now, answered_by=amd)
                )
                final = event_of_twilio("completed", at=now, duration="3")
            else:
                status = {"no_answer": "no-answer", "busy": "busy", "failed": "failed"}[behaviour]
                final = event_of_twilio(status, at=now)
            with self.lock:
                # The carrier no longer holds the call once it says so.
                self.live.pop(call_id, None)
            calls.record_event(account_id, call_id, final)
        return len(ending)

    def hang_up(self, carrier_sid: str) -> None:
        return None

    def buy_number(self, phone_number: str, **_: Any) -> Any:
        from talkturo.domain.telephony import ProvisionedNumber

        with self.lock:
            self.count += 1
            return ProvisionedNumber(carrier_sid=f"PN{self.count:032d}", phone_number=phone_number)


class ReadCounter:
    """DynamoDB reads made inside campaigns.dispatch, per dispatch run (thread-local)."""

    READS = {"GetItem", "Query", "BatchGetItem", "Scan"}

    def __init__(self) -> None:
        self.local = threading.local()
        self.per_dispatch: list[int] = []
        self.seconds: list[float] = []
        self.lock = threading.Lock()

    def install(self) -> None:
        from pynamodb.connection.base import Connection

        from talkturo.services import campaigns

        counter = self
        original_dispatch = Connection.dispatch
        original_run = campaigns.dispatch

        def counting(self: Any, operation: str, kwargs: dict[str, Any]) -> Any:
            if operation in counter.READS and getattr(counter.local, "reads", None) is not None:
                counter.local.reads += 1
            return original_dispatch(self, operation, kwargs)

        def measured(account_id: str, campaign_id: str) -> int:
            outer = getattr(counter.local, "reads", None)
            counter.local.reads = 0
            began = time.perf_counter()
            try:
                return original_run(account_id, campaign_id)
            finally:
                with counter.lock:
                    counter.per_dispatch.append(counter.local.reads)
                    counter.seconds.append(time.perf_counter() - began)
                counter.local.reads = outer

        Connection.dispatch = counting  # type: ignore[method-assign]
        campaigns.dispatch = measured  # type: ignore[assignment]


def _workers(stack: Any, stop: threading.Event) -> list[threading.Thread]:
    import json

    import boto3

    from talkturo.domain.calls import DialJob
    from talkturo.services import calls, campaigns

    sqs = boto3.client("sqs", region_name="us-east-1")

    def consume(queue: str, handle: Any) -> None:
        url = stack.physical[queue]
        while not stop.is_set():
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                try:
                    handle(json.loads(message["Body"]))
                except Exception as error:
                    print(f"    (a job failed and comes back: {error.__class__.__name__})")
                    continue
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    jobs = [("CampaignQueue", campaigns.handle_job)] * 3
    jobs += [("DialQueue", lambda body: calls.dial(DialJob.model_validate(body)))] * 2
    return [threading.Thread(target=consume, args=job, daemon=True) for job in jobs]


def engine_run(size: int) -> dict[str, Any]:
    from talkturo import config
    from talkturo.carrier.factory import set_carrier
    from talkturo.domain.campaigns import CampaignCreate
    from talkturo.domain.contacts import ContactCreate, ContactUpdate
    from talkturo.services import assistants, campaigns, contacts, numbers
    from talkturo.store import campaigns as campaign_store

    os.environ["TALKTURO_DIAL_CALLS_PER_SECOND"] = "100"
    os.environ["TALKTURO_CAMPAIGN_DELAY_SCALE"] = "0"
    os.environ["PUBLIC_BASE_URL"] = "https://hooks.example.com"
    config.get_settings.cache_clear()
    with local_aws(f"talkturo-bench-campaign-{size}") as stack:
        rng = random.Random(size)
        zone = awake_zone()
        behaviours: dict[str, str] = {}
        network = Network(behaviours)
        set_carrier(network)  # type: ignore[arg-type]
        account_id, _ = sign_up("campaign bench")
        from talkturo.domain.numbers import PhoneNumberBuy
        from talkturo.store import accounts as account_store

        account = account_store.get_account(account_id)
        account_store.save_account(account.model_copy(update={"plan": "paid"}))
        from decimal import Decimal

        from talkturo.services import credits

        credits.record(account_id, "grant", Decimal(100000), idempotency_key="bench:grant")
        assistant = assistants.create_assistant(account_id, {"template": "custom"})
        _buy = network_numbers(account_id, numbers, PhoneNumberBuy, network)
        for number_id in _buy:
            numbers.assign(account_id, number_id, assistant.id)
        ids = []
        for n in range(size):
            phone = f"+1415{2000000 + n:07d}"
            behaviours[phone] = rng.choice(BEHAVIOURS)
            made = contacts.create(
                account_id,
                ContactCreate(first_name=f"C{n}", phone=phone, timezone=zone, tags=["bench"]),
            )
            ids.append(made.id)
        dnc = set(rng.sample(ids, max(1, size // 20)))
        request = CampaignCreate.model_validate(
            {
                "name": "bench",
                "assistant_id": assistant.id,
                "audience": {"type": "filter", "tag": "bench"},
                "call_window": {"allow_anytime": True},
                "max_concurrent_calls": CONCURRENCY,
                "max_attempts": 3,
                "retry": {"outcomes": ["no_answer", "busy", "error", "voicemail"]},
            }
        )
        counter = ReadCounter()
        counter.install()
        stop = threading.Event()
        workers = _workers(stack, stop)
        for worker in workers:
            worker.start()
        campaign = campaigns.create(account_id, request)
        while campaigns.get(account_id, campaign.id).audience_status == "building":
            time.sleep(0.05)
        started = time.perf_counter()
        campaigns.start(account_id, campaign.id)
        marked: dict[str, datetime] = {}
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if len(marked) < len(dnc) and network.count >= size // 4:
                for contact_id in dnc - set(marked):
                    marked[contact_id] = datetime.now(UTC)
                    contacts.update(account_id, contact_id, ContactUpdate(do_not_call=True))
            network.end_some(account_id)
            if campaigns.get(account_id, campaign.id).status == "completed":
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        stop.set()
        for worker in workers:
            worker.join()
        shown = campaigns.get(account_id, campaign.id)
        by_call: dict[str, Any] = {}
        for call_id, to, when in network.dials:
            by_call[call_id] = (to, when)
        phone_of = {
            c.contact_id: c.phone for c in _members(campaign_store, account_id, campaign.id)
        }
        dnc_phones = {phone_of[c]: when for c, when in marked.items()}
        to_dnc = sum(
            1 for to, when in by_call.values() if to in dnc_phones and when > dnc_phones[to]
        )
        outside = sum(
            1 for _, when in by_call.values() if not 8 <= when.astimezone(ZoneInfo(zone)).hour < 21
        )
        attempts = Counter(to for to, _ in by_call.values())
        reads = counter.per_dispatch
        return {
            "size": size,
            "status": shown.status,
            "dials": len(network.dials),
            "peak": network.peak,
            "to_dnc": to_dnc,
            "outside": outside,
            "over_attempts": sum(1 for n in attempts.values() if n > 3),
            "reads_mean": statistics.mean(reads) if reads else 0.0,
            "reads_p95": _percentile([float(r) for r in reads], 0.95) if reads else 0.0,
            "dispatches": len(reads),
            "dispatch_ms": 1000 * statistics.mean(counter.seconds) if counter.seconds else 0.0,
            "wall": wall,
            "counts": shown.counts,
            "outcomes": shown.outcomes,
        }


def network_numbers(account_id: str, numbers: Any, buy: Any, network: Network) -> list[str]:
    """Two active numbers for the caller-ID rotation (bought and provisioned in-process)."""
    from talkturo.domain.numbers import ProvisionJob

    made = []
    for phone in ("+14155550140", "+14155550141"):
        bought = numbers.buy(account_id, buy(phone_number=phone))
        numbers.provision(ProvisionJob(account_id=account_id, number_id=bought.id), network)
        made.append(bought.id)
    return made


def _members(store: Any, account_id: str, campaign_id: str) -> Iterator[Any]:
    cursor = None
    while True:
        page, cursor = store.list_contacts(
            account_id, campaign_id, state=None, limit=100, starting_after=cursor
        )
        yield from page
        if cursor is None:
            return


def engine() -> None:
    print(
        f"\nCampaign engine: concurrency {CONCURRENCY}, mixed callees, 5 % DNC mid-run, "
        "3 campaign workers and 2 dialers racing (emulator, in-process carrier)\n"
    )
    print(
        "  contacts  dials  peak calls  DNC dials  outside floor  over attempts  "
        "reads/dispatch (mean, p95)  dispatches  wall"
    )
    for size in SIZES:
        r = engine_run(size)
        print(
            f"  {r['size']:>8}  {r['dials']:>5}  {r['peak']:>10}  {r['to_dnc']:>9}  "
            f"{r['outside']:>13}  {r['over_attempts']:>13}  "
            f"{r['reads_mean']:>14.1f}, {r['reads_p95']:>4.0f}       {r['dispatches']:>10}  "
            f"{r['wall']:.0f} s  ({r['status']})"
        )
        print(f"            outcomes {r['outcomes']}")
        print(f"            a dispatch run takes {r['dispatch_ms']:.0f} ms on average")
        verdict = r["peak"] == CONCURRENCY and not (
            r["to_dnc"] or r["outside"] or r["over_attempts"]
        )
        print(f"            limits held: {'PASS' if verdict else 'FAIL'}")


# --------------------------------------------------------------------------- part 2


@contextlib.contextmanager
def _platform() -> Iterator[dict[str, str]]:
    from benchmarks.scale import _free_port

    port = _free_port()
    api_key = "tk_bench_campaign_0123456789abcdef"
    command = [sys.executable, "-m", "talkturo.cli", "dev", "--port", str(port)]
    for option in ("--aws-port", "--carrier-port", "--voice-port"):
        command += [option, str(_free_port())]
    data = tempfile.TemporaryDirectory(prefix="talkturo-bench-campaign-")
    log_path = Path(data.name) / "dev.log"
    log = log_path.open("w+")
    env = {
        **os.environ,
        "TALKTURO_DEV_API_KEY": api_key,
        "TALKTURO_DATA_DIR": data.name + "/data",
        "TALKTURO_DIAL_CALLS_PER_SECOND": "20",
    }
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).is_success:
                    break
            time.sleep(0.5)
        log.flush()
        banner = log_path.read_text()
        sid = re.search(r"TWILIO_ACCOUNT_SID=(\S+)", banner)
        token = re.search(r"TWILIO_AUTH_TOKEN=(\S+)", banner)
        simulator = re.search(r"TALKTURO_SIMULATOR_URL=(\S+)", banner)
        assert sid and token and simulator, "the banner lost the simulator's credentials"
        yield {
            "api": f"http://127.0.0.1:{port}",
            "key": api_key,
            "sid": sid.group(1),
            "token": token.group(1),
            "simulator": simulator.group(1),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        data.cleanup()


def latency(contacts: int = 40, campaigns: int = 5) -> None:
    print(
        f"\nCampaign latency through `talkturo dev` (simulator and voice service): "
        f"{campaigns} campaigns of {contacts // campaigns} contacts, concurrency {CONCURRENCY}\n"
    )
    with _platform() as platform:
        api = httpx.Client(
            base_url=platform["api"],
            headers={"Authorization": f"Bearer {platform['key']}"},
            timeout=30,
        )
        sim = httpx.Client(
            base_url=platform["simulator"], auth=(platform["sid"], platform["token"]), timeout=30
        )
        assistant = api.post("/v1/assistants", json={"template": "custom"}).json()["id"]
        phone = api.get("/v1/phone-numbers/available", params={"country": "US", "limit": 1})
        number = api.post(
            "/v1/phone-numbers", json={"phone_number": phone.json()["data"][0]["phone_number"]}
        ).json()["id"]
        while api.get(f"/v1/phone-numbers/{number}").json()["status"] != "active":
            time.sleep(0.2)
        api.post(f"/v1/phone-numbers/{number}/assign", json={"assistant_id": assistant})
        zone = awake_zone()
        first_dials: list[float] = []
        refills: list[float] = []
        per = contacts // campaigns
        for round_ in range(campaigns):
            tag = f"round{round_}"
            for n in range(per):
                callee = f"+1415{3000000 + round_ * 1000 + n:07d}"
                sim.put(
                    f"/_sim/callees/{callee}",
                    json={"behaviour": "human", "ring_seconds": 0.2, "talk_seconds": 1.0},
                )
                api.post(
                    "/v1/contacts",
                    json={
                        "first_name": f"R{round_}-{n}",
                        "phone": callee,
                        "timezone": zone,
                        "tags": [tag],
                    },
                )
            made = api.post(
                "/v1/campaigns",
                json={
                    "name": tag,
                    "assistant_id": assistant,
                    "audience": {"type": "filter", "tag": tag},
                    "call_window": {"allow_anytime": True},
                    "max_concurrent_calls": 2,
                },
            ).json()
            while api.get(f"/v1/campaigns/{made['id']}").json()["audience_status"] != "ready":
                time.sleep(0.1)
            asked = datetime.now(UTC)
            api.post(f"/v1/campaigns/{made['id']}/start")
            while api.get(f"/v1/campaigns/{made['id']}").json()["status"] != "completed":
                time.sleep(0.5)
            calls = api.get("/v1/calls", params={"campaign_id": made["id"], "limit": 100})
            records = sorted(calls.json()["data"], key=lambda c: c["created_at"])
            first = datetime.fromisoformat(records[0]["created_at"])
            first_dials.append((first - asked).total_seconds())
            ends = sorted(datetime.fromisoformat(c["ended_at"]) for c in records)
            # With two slots, each call after the first two took the slot a call's end freed.
            for index, record in enumerate(records[2:]):
                created = datetime.fromisoformat(record["created_at"])
                refills.append((created - ends[index]).total_seconds())
        print(
            f"  start -> first call claimed   p50 {statistics.median(first_dials):.2f} s  "
            f"p95 {_percentile(first_dials, 0.95):.2f} s  "
            f"(target <= {TARGET_FIRST_DIAL_P95} s p95: "
            f"{'PASS' if _percentile(first_dials, 0.95) <= TARGET_FIRST_DIAL_P95 else 'FAIL'})"
        )
        if refills:
            print(
                f"  call end -> next call claimed p50 {statistics.median(refills):.2f} s  "
                f"p95 {_percentile(refills, 0.95):.2f} s  "
                f"(target <= {TARGET_REFILL_P95} s p95: "
                f"{'PASS' if _percentile(refills, 0.95) <= TARGET_REFILL_P95 else 'FAIL'})"
            )


def run() -> None:
    engine()
    latency()


if __name__ == "__main__":
    run()
