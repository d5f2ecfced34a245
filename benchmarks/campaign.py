"""Campaigns: the engine at 100 and 1,000 contacts, and a campaign through `talkturo dev`.

Part 1, the engine on the emulator (in this process): a campaign of N contacts (100, then
1,000, or `TALKTURO_BENCH_CAMPAIGN_CONTACTS`) at concurrency 10 with mixed callees (human, no
answer, busy, voicemail, failing) and 5 % of the contacts marked DNC once it runs. Three
campaign workers and two dialers race on the queues, as Lambda's concurrent invocations would;
an in-memory carrier keeps each call live 1 to 3 s (`TALKTURO_BENCH_CAMPAIGN_HOLD_SECONDS`, the
middle of the range: 2) and then reports its end.
Prints the most simultaneous calls the carrier ever held (must equal the limit, never above),
dials outside the floor or to a DNC contact (must be 0), attempts over the limit (must be 0),
DynamoDB reads per dispatch (it must stay flat as the campaign grows) and wall time.

Part 2, a campaign as a user runs it (`python -m benchmarks campaign`, after part 1):
`talkturo dev` with its own data folder, 200 contacts (`TALKTURO_BENCH_CAMPAIGN_DEV_CONTACTS`)
in a timezone awake now, their phones set on the carrier simulator (human 50 %, busy 20 %,
voicemail 15 %, failing 10 %, no answer 5 %), concurrency 10, 3 attempts, retry delays of 60 s
scaled to 3 s (`TALKTURO_CAMPAIGN_DELAY_SCALE`), dials paced at 20/s, two contacts marked DNC
mid-run. Everything is measured where the calls go, from the simulator's activity
(`GET /_sim/activity`: each call placed and ended, to the millisecond, and the most ever live):
start -> first dial (p50/p95 over 10 one-contact campaigns), call end -> the next dial in the
slot it freed (p50/p95, split into the engine's claim and the way to the carrier, and by the
way each end went: handed over, or why not and what the dispatch then did, from the platform's
`campaign slot freed` log lines), the most calls live at once, dials outside 08:00-21:00
local, dials to the DNC'd contacts after they were marked, attempts over the limit, wall time.
Then, on the same platform, an audience of 10,000 contacts (`TALKTURO_BENCH_CAMPAIGN_AUDIENCE`,
0 to leave it out): imported as a CSV, then a campaign over them, timed from its creation until
every contact is materialised.
"""

from __future__ import annotations

import contextlib
import json
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
from unittest import mock
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
# How long the in-memory carrier keeps a call: HOLD_SECONDS times 0.5 to 1.5 (1 to 3 s).
HOLD_SECONDS = float(os.environ.get("TALKTURO_BENCH_CAMPAIGN_HOLD_SECONDS", "2"))
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
    """DynamoDB reads made by each dispatch round (campaigns._fill; a dispatch runs one or more
    rounds, one asked for while another runs none): the round's own thread's, and those of the
    threads it reads and claims with ("round", "kept", "claim"); one campaign runs one round at
    a time (its turn), so those threads' reads are that round's. The claimed calls' dials
    ("dial" threads, beside the round) are not the round's."""

    HELPERS = ("round", "kept", "claim")

    READS = {"GetItem", "Query", "BatchGetItem", "Scan"}

    def __init__(self) -> None:
        self.local = threading.local()
        self.helper_reads = 0  # reads of the round's helper threads
        self.per_dispatch: list[int] = []
        self.seconds: list[float] = []
        self.lock = threading.Lock()

    def install(self) -> None:
        from pynamodb.connection.base import Connection

        from talkturo.services import campaigns

        counter = self
        original_dispatch = Connection.dispatch
        original_run = campaigns._fill

        def counting(self: Any, operation: str, kwargs: dict[str, Any]) -> Any:
            if operation in counter.READS:
                if getattr(counter.local, "reads", None) is not None:
                    counter.local.reads += 1
                elif threading.current_thread().name.startswith(counter.HELPERS):
                    with counter.lock:
                        counter.helper_reads += 1
            return original_dispatch(self, operation, kwargs)

        def measured(account_id: str, campaign_id: str, campaign: Any, kept: Any) -> int:
            outer = getattr(counter.local, "reads", None)
            counter.local.reads = 0
            with counter.lock:
                counter.helper_reads = 0
            began = time.perf_counter()
            try:
                return original_run(account_id, campaign_id, campaign, kept)
            finally:
                with counter.lock:
                    counter.per_dispatch.append(counter.local.reads + counter.helper_reads)
                    counter.seconds.append(time.perf_counter() - began)
                counter.local.reads = outer

        Connection.dispatch = counting  # type: ignore[method-assign]
        campaigns._fill = measured  # type: ignore[assignment]


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

    # Settings of this run only: the platform the latency part starts next inherits the
    # environment (a public URL left here would send its carrier's callbacks elsewhere).
    settings = {
        "TALKTURO_DIAL_CALLS_PER_SECOND": "100",
        "TALKTURO_CAMPAIGN_DELAY_SCALE": "0",
        "PUBLIC_BASE_URL": "https://hooks.example.com",
    }
    with mock.patch.dict(os.environ, settings), _settings_read_again(config):
        return _engine_run(size)


@contextlib.contextmanager
def _settings_read_again(config: Any) -> Iterator[None]:
    config.get_settings.cache_clear()
    try:
        yield
    finally:
        config.get_settings.cache_clear()


def _engine_run(size: int) -> dict[str, Any]:
    from talkturo.carrier.factory import set_carrier
    from talkturo.domain.campaigns import CampaignCreate
    from talkturo.domain.contacts import ContactCreate, ContactUpdate
    from talkturo.services import assistants, campaigns, contacts, numbers
    from talkturo.store import campaigns as campaign_store

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
        # About 2 calls a contact, at about one a second on a loaded 2-core machine.
        deadline = time.monotonic() + max(1800, 3 * size)
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
        "reads/round (mean, p95)         rounds  wall"
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
        print(f"            a dispatch round takes {r['dispatch_ms']:.0f} ms on average")
        verdict = r["peak"] == CONCURRENCY and not (
            r["to_dnc"] or r["outside"] or r["over_attempts"]
        )
        print(f"            limits held: {'PASS' if verdict else 'FAIL'}")


# --------------------------------------------------------------------------- part 2

DEV_CONTACTS = int(os.environ.get("TALKTURO_BENCH_CAMPAIGN_DEV_CONTACTS", "200"))
# The audience part: a campaign over this many contacts, its audience gathered (0: skipped).
AUDIENCE_CONTACTS = int(os.environ.get("TALKTURO_BENCH_CAMPAIGN_AUDIENCE", "10000"))
FIRST_DIAL_TRIALS = 10
ADMIN_SECRET = "bench-admin-secret-0123456789abcdefghij"
# Retry delays of 60 s (the least a campaign takes) scaled to 3 s.
DELAY_SCALE = "0.05"
DIALS_PER_SECOND = "20"
# The callees of the dev run: (behaviour, share). A no-answer call rings the platform's 30 s.
DEV_MIX = [("human", 50), ("busy", 20), ("voicemail", 15), ("failed", 10), ("no_answer", 5)]
CALLEES = {
    "human": {"behaviour": "human", "ring_seconds": 0.5, "talk_seconds": 2},
    "busy": {"behaviour": "busy", "ring_seconds": 0.5},
    "voicemail": {"behaviour": "voicemail", "ring_seconds": 0.5, "amd_seconds": 0},
    "failed": {"behaviour": "failed"},
    "no_answer": {"behaviour": "no_answer"},
}


@contextlib.contextmanager
def _platform() -> Iterator[dict[str, str]]:
    from benchmarks.scale import _free_port

    port = _free_port()
    api_key = "tk_bench_campaign_0123456789abcdef"
    command = [sys.executable, "-m", "talkturo.cli", "dev", "--port", str(port)]
    for option in ("--aws-port", "--carrier-port", "--stripe-port", "--voice-port"):
        command += [option, str(_free_port())]
    data = tempfile.TemporaryDirectory(prefix="talkturo-bench-campaign-")
    log_path = Path(data.name) / "dev.log"
    log = log_path.open("w+")
    env = {
        **os.environ,
        "TALKTURO_DEV_API_KEY": api_key,
        "TALKTURO_ADMIN_SECRET": ADMIN_SECRET,
        "TALKTURO_DATA_DIR": data.name + "/data",
        "TALKTURO_DIAL_CALLS_PER_SECOND": DIALS_PER_SECOND,
        "TALKTURO_CAMPAIGN_DELAY_SCALE": DELAY_SCALE,
    }
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).is_success:
                    break
            time.sleep(0.5)
        banner = ""
        while time.monotonic() < deadline and "TWILIO_AUTH_TOKEN=" not in banner:
            time.sleep(0.2)
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
            "log": str(log_path),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        data.cleanup()


def _ok(answer: httpx.Response) -> Any:
    if not answer.is_success:
        raise RuntimeError(f"{answer.request.method} {answer.request.url}: {answer.text}")
    return answer.json() if answer.content else None


def _wait(read: Any, done: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s (last: {value!r})")
        time.sleep(0.05)


def _every(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 100, **params}
    while True:
        page = _ok(api.get(path, params=query))
        found += page["data"]
        if not page["has_more"]:
            return found
        query = {"limit": 100, **params, "starting_after": page["next_cursor"]}


def _campaign(api: httpx.Client, assistant: str, tag: str, **fields: Any) -> str:
    made = _ok(
        api.post(
            "/v1/campaigns",
            json={
                "name": tag,
                "assistant_id": assistant,
                "audience": {"type": "filter", "tag": tag},
                "call_window": {"allow_anytime": True, "use_contact_timezone": True},
                **fields,
            },
        )
    )
    _wait(
        lambda: _ok(api.get(f"/v1/campaigns/{made['id']}")),
        lambda c: c["audience_status"] == "ready",
        120,
        "the audience is gathered",
    )
    return str(made["id"])


def _contacts_csv(rows: list[tuple[str, str, str]], tag: str) -> bytes:
    lines = ["first_name,phone,timezone,tags"]
    lines += [f"{name},{phone},{zone},{tag}" for name, phone, zone in rows]
    return ("\n".join(lines) + "\n").encode()


def _import(api: httpx.Client, rows: list[tuple[str, str, str]], tag: str) -> None:
    job = _ok(
        api.post(
            "/v1/contact-imports",
            content=_contacts_csv(rows, tag),
            headers={"Content-Type": "text/csv"},
        )
    )
    done = _wait(
        lambda: _ok(api.get(f"/v1/contact-imports/{job['id']}")),
        lambda j: j["status"] in ("completed", "failed"),
        300 + len(rows) / 10,
        "the contacts are imported",
    )
    if done["failed"] or done["status"] != "completed":
        raise RuntimeError(f"the import failed: {done}")


@dataclass
class Placed:
    """A call as the carrier saw it."""

    to: str
    placed_at: float
    ended_at: float | None
    attempt: int = 0  # the number's how-manieth call (refills() counts)
    claimed_at: float | None = None  # when the engine claimed it (its call record's created_at)


def _activity(sim: httpx.Client) -> tuple[int, list[Placed]]:
    seen = _ok(sim.get("/_sim/activity"))
    calls = [Placed(c["to"], c["placed_at"], c["ended_at"]) for c in seen["calls"]]
    return int(seen["max_live"]), sorted(calls, key=lambda c: c.placed_at)


def refills(calls: list[Placed], due: dict[str, list[float]]) -> list[tuple[float, Placed]]:
    """Seconds from each call's end to the call placed in the slot it freed, counted only when
    a contact was due at that end (else the slot had nobody to take it).

    `due[to]`: when each of the number's attempts was due (its first: the campaign's start;
    the next ones: the previous call's end plus the retry delay). Each end takes the first call
    placed after it whose contact was already due then, each call refilling one end only.
    """
    waiting: list[tuple[float, float]] = []  # (due, placed) of every call
    attempts: dict[str, int] = {}
    for call in calls:
        n = attempts.get(call.to, 0)
        attempts[call.to] = n + 1
        call.attempt = n + 1
        waiting.append((due[call.to][n], call.placed_at))
    taken: set[int] = set()
    gaps = []
    for end in sorted(c.ended_at for c in calls if c.ended_at is not None):
        best = None
        for index, (due_at, placed_at) in enumerate(waiting):
            if index in taken or placed_at < end or due_at > end:
                continue
            if best is None or placed_at < waiting[best][1]:
                best = index
        if best is not None:
            taken.add(best)
            gaps.append((end, calls[best]))
    return gaps


def _line(api: httpx.Client) -> tuple[str, str]:
    """A custom assistant on an active simulated number: (assistant id, its number)."""
    assistant = _ok(api.post("/v1/assistants", json={"template": "custom"}))["id"]
    offered = _ok(api.get("/v1/phone-numbers/available", params={"country": "US", "limit": 1}))
    phone = offered["data"][0]["phone_number"]
    number = _ok(api.post("/v1/phone-numbers", json={"phone_number": phone}))["id"]
    _wait(
        lambda: _ok(api.get(f"/v1/phone-numbers/{number}")),
        lambda n: n["status"] != "purchasing",
        60,
        "the number is provisioned",
    )
    _ok(api.post(f"/v1/phone-numbers/{number}/assign", json={"assistant_id": assistant}))
    return assistant, phone


def latency(size: int = DEV_CONTACTS, trials: int = FIRST_DIAL_TRIALS) -> None:
    print(
        f"\nA campaign through `talkturo dev` (carrier simulator, voice service): {size} contacts, "
        f"concurrency {CONCURRENCY}, 3 attempts, retries after 3 s, "
        f"{DIALS_PER_SECOND} dials/s\n"
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
        account = _ok(api.get("/v1/account"))["id"]
        _ok(
            httpx.post(
                f"{platform['api']}/v1/admin/accounts/{account}/credits",
                json={"kind": "grant", "amount": "100000"},
                headers={"Authorization": f"Bearer {ADMIN_SECRET}"},
            )
        )
        assistant, _ = _line(api)
        zone = awake_zone()
        rng = random.Random(2026)

        # Start -> first dial: campaigns of one busy contact each, one after the other.
        trial_rows = [(f"Trial{n}", f"+1206{5300000 + n:07d}", zone) for n in range(trials)]
        for _, phone, _ in trial_rows:
            _ok(sim.put(f"/_sim/callees/{phone}", json=CALLEES["busy"]))
        first_dials: list[float] = []
        for n, row in enumerate(trial_rows):
            _import(api, [row], f"trial{n}")
            campaign = _campaign(api, assistant, f"trial{n}", max_attempts=1)
            asked = time.time()
            _ok(api.post(f"/v1/campaigns/{campaign}/start"))
            _, calls = _wait(
                lambda: _activity(sim),
                lambda seen, to=row[1]: any(c.to == to for c in seen[1]),
                60,
                "the trial's call reaches the carrier",
            )
            first_dials.append(next(c.placed_at for c in calls if c.to == row[1]) - asked)
            _wait(
                lambda c=campaign: _ok(api.get(f"/v1/campaigns/{c}")),
                lambda c: c["status"] == "completed",
                60,
                "the trial campaign completes",
            )

        # The campaign: mixed callees, two contacts marked DNC once it runs.
        kinds = [kind for kind, share in DEV_MIX for _ in range(share)]
        rows = [(f"Bench{n}", f"+1206{5400000 + n:07d}", zone) for n in range(size)]
        behaviour = {phone: rng.choice(kinds) for _, phone, _ in rows}
        for phone, kind in behaviour.items():
            _ok(sim.put(f"/_sim/callees/{phone}", json=CALLEES[kind]))
        _import(api, rows, "bench")
        campaign = _campaign(
            api,
            assistant,
            "bench",
            max_concurrent_calls=CONCURRENCY,
            max_attempts=3,
            retry={
                "outcomes": ["no_answer", "busy", "error"],
                "delays": {"no_answer": 60, "busy": 60, "error": 60},
            },
        )
        _ok(sim.delete("/_sim/activity"))
        started = time.time()
        _ok(api.post(f"/v1/campaigns/{campaign}/start"))
        marked: dict[str, float] = {}  # phone -> when its contact was marked DNC
        status = "running"
        while status not in ("completed", "cancelled", "paused"):
            time.sleep(0.5)
            shown = _ok(api.get(f"/v1/campaigns/{campaign}"))
            status = shown["status"]
            if not marked and sum(shown["outcomes"].values()) >= size // 4:
                marked = _mark_dnc(api, campaign)
        wall = time.time() - started
        peak, calls = _activity(sim)
        calls = [c for c in calls if c.to in behaviour]
        members = {m["phone"]: m for m in _every(api, f"/v1/campaigns/{campaign}/contacts")}
        records = _every(api, "/v1/calls", campaign_id=campaign)
        freed = _slots_freed(Path(platform["log"]))
        gathered = audience(api, assistant, AUDIENCE_CONTACTS, zone) if AUDIENCE_CONTACTS else None
    claimed = {
        (r["to_number"], r["attempt"]): datetime.fromisoformat(r["created_at"]).timestamp()
        for r in records
    }

    due = _due_times(calls, started, 60 * float(DELAY_SCALE))
    pairs = refills(calls, due)
    gaps = [call.placed_at - end for end, call in pairs]
    to_claim = [claimed[(call.to, call.attempt)] - end for end, call in pairs]
    to_carrier = [call.placed_at - claimed[(call.to, call.attempt)] for _, call in pairs]
    outside = sum(
        1 for c in calls if not 8 <= datetime.fromtimestamp(c.placed_at, ZoneInfo(zone)).hour < 21
    )
    to_dnc = sum(1 for c in calls if c.to in marked and c.placed_at > marked[c.to])
    per_number = Counter(c.to for c in calls)
    over = sum(1 for n in per_number.values() if n > 3)
    over += sum(1 for m in members.values() if m["attempts"] > 3)
    first_p95 = _percentile(first_dials, 0.95)
    print(
        f"  start -> first dial at the carrier  p50 {statistics.median(first_dials):.2f} s  "
        f"p95 {first_p95:.2f} s  ({trials} campaigns; target <= {TARGET_FIRST_DIAL_P95:g} s p95: "
        f"{'PASS' if first_p95 <= TARGET_FIRST_DIAL_P95 else 'FAIL'})"
    )
    if gaps:
        refill_p95 = _percentile(gaps, 0.95)
        print(
            f"  call end -> next dial in its slot   p50 {statistics.median(gaps):.2f} s  "
            f"p95 {refill_p95:.2f} s  ({len(gaps)} refills; target <= {TARGET_REFILL_P95:g} s "
            f"p95: {'PASS' if refill_p95 <= TARGET_REFILL_P95 else 'FAIL'})"
        )
        print(
            f"    of which end -> claimed           p50 {statistics.median(to_claim):.2f} s  "
            f"p95 {_percentile(to_claim, 0.95):.2f} s"
        )
        print(
            f"    and claimed -> at the carrier     p50 {statistics.median(to_carrier):.2f} s  "
            f"p95 {_percentile(to_carrier, 0.95):.2f} s"
        )
        _refill_paths(pairs, calls, records, freed)
    print(
        f"  most calls live at the carrier      {peak} (limit {CONCURRENCY}: "
        f"{'PASS' if peak == CONCURRENCY else 'FAIL'})"
    )
    print(f"  dials outside 08:00-21:00 local     {outside}")
    print(f"  dials to DNC contacts after marking {to_dnc} ({len(marked)} marked mid-run)")
    print(f"  attempts over the limit of 3        {over}")
    print(f"  calls placed                        {len(calls)} to {len(per_number)} contacts")
    print(f"  outcomes                            {shown['outcomes']}")
    print(f"  contacts                            {shown['counts']} ({status})")
    print(f"  wall time                           {wall:.0f} s")
    verdict = peak == CONCURRENCY and not (outside or to_dnc or over) and status == "completed"
    print(f"  limits held: {'PASS' if verdict else 'FAIL'}")
    if gathered is not None:
        total, built = int(gathered["total"]), gathered["built"]
        print(
            f"  audience of {total:,} contacts        gathered in {built:.0f} s "
            f"({total / built:.0f} contacts/s; imported first in {gathered['imported']:.0f} s)"
        )


def _slots_freed(log: Path) -> dict[str, dict[str, Any]]:
    """call id -> the engine's "campaign slot freed" line for its end (how it was refilled)."""
    freed: dict[str, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        if '"campaign slot freed"' in line and "{" in line:
            with contextlib.suppress(ValueError):
                entry = json.loads(line[line.index("{") :])
                freed[str(entry["call"])] = entry
    return freed


def _refill_paths(
    pairs: list[tuple[float, Placed]],
    calls: list[Placed],
    records: list[dict[str, Any]],
    freed: dict[str, dict[str, Any]],
) -> None:
    """The refills split by the way each end went (the engine's log line for the ended call):
    handed over, or why not and what the dispatch asked for then placed; with each path's share
    of the slowest 5 %."""
    call_id = {(r["to_number"], r["attempt"]): r["id"] for r in records}
    ended = {c.ended_at: c for c in calls if c.ended_at is not None}
    paths: dict[str, list[float]] = {}
    for end, call in pairs:
        entry = freed.get(call_id.get((ended[end].to, ended[end].attempt), ""))
        if entry is None:
            path = "(no log line)"
        elif entry["handover"] == "placed":
            path = "handed over"
        else:
            asked = "placed" if entry.get("refilled") else "asked a running round (or none)"
            path = f"{entry['handover']}, then dispatch {asked}"
        paths.setdefault(path, []).append(call.placed_at - end)
    gaps = sorted(g for found in paths.values() for g in found)
    slowest = gaps[-max(1, len(gaps) // 20) :]
    tail_from = slowest[0]
    print(f"    {'by path':<56} n    p50     p95   of the slowest 5 %")
    for path, found in sorted(paths.items(), key=lambda p: -len(p[1])):
        in_tail = sum(1 for g in found if g >= tail_from)
        print(
            f"      {path:<54} {len(found):>4}  {statistics.median(found):.2f} s  "
            f"{_percentile(found, 0.95):.2f} s  {in_tail}"
        )


def audience(api: httpx.Client, assistant: str, size: int, zone: str) -> dict[str, float]:
    """Import `size` contacts, then time a campaign's audience over them from its creation
    until every contact is materialised (`audience_status` ready)."""
    rows = [(f"Audience{n}", f"+1206{5500000 + n:07d}", zone) for n in range(size)]
    began = time.time()
    _import(api, rows, "audience")
    imported = time.time() - began
    made = _ok(
        api.post(
            "/v1/campaigns",
            json={
                "name": "audience",
                "assistant_id": assistant,
                "audience": {"type": "filter", "tag": "audience"},
            },
        )
    )
    asked = time.time()
    shown = _wait(
        lambda: _ok(api.get(f"/v1/campaigns/{made['id']}")),
        lambda c: c["audience_status"] != "building",
        120 + size / 10,
        "the audience is gathered",
    )
    built = time.time() - asked
    if shown["audience_status"] != "ready" or shown["audience_total"] != size:
        raise RuntimeError(f"the audience was not gathered: {shown}")
    return {"imported": imported, "built": built, "total": float(shown["audience_total"])}


def _mark_dnc(api: httpx.Client, campaign: str) -> dict[str, float]:
    """Mark contacts do-not-call while the campaign runs: the last two not yet called and, if
    there is one, one waiting for a retry that is over a second away (no claim can be under way
    for any of them)."""
    members = _every(api, f"/v1/campaigns/{campaign}/contacts", state="pending")
    now = datetime.now(UTC)
    fresh = [m for m in members if m["attempts"] == 0]
    retrying = [
        m
        for m in members
        if m["attempts"] > 0
        and m["next_attempt_at"]
        and (datetime.fromisoformat(m["next_attempt_at"]) - now).total_seconds() > 1.2
    ]
    chosen = fresh[-2:] + retrying[:1]
    marked = {}
    for member in chosen:
        _ok(api.patch(f"/v1/contacts/{member['contact_id']}", json={"do_not_call": True}))
        marked[member["phone"]] = time.time()
    return marked


def _due_times(calls: list[Placed], started: float, delay: float) -> dict[str, list[float]]:
    """When each number's attempts were due: the start, then each previous end plus the delay."""
    due: dict[str, list[float]] = {}
    for call in calls:
        times = due.setdefault(call.to, [started])
        if call.ended_at is not None:
            times.append(call.ended_at + delay)
    return due


def run() -> None:
    engine()
    latency()


if __name__ == "__main__":
    run()
