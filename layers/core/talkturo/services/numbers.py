"""Phone numbers: search, buy (provisioned in the background), assign, release, trial expiry,
rent (charged on purchase and monthly; unpaid numbers suspended, resumed when credits arrive,
released after their grace).

Buying answers at once: the number is written as `purchasing` (with its routing item, so no
other account can take it meanwhile) and a message goes to the provisioning queue. The worker
(`provision`) buys it at the carrier and moves it to `active` or `error`, guarded by the status
so that a redelivered message never buys twice.

The carrier is a parameter of every function that talks to it (`carrier: Carrier | None`); by
default it is the process's carrier, `talkturo.carrier.get_carrier()` (tests replace it with
`talkturo.carrier.factory.set_carrier`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.common import Page, utcnow
from talkturo.domain.credits import credits_of_cents
from talkturo.domain.dead_letters import Outcome
from talkturo.domain.numbers import (
    TRIAL_LIMIT,
    AvailableList,
    AvailablePhoneNumber,
    PhoneNumber,
    PhoneNumberBuy,
    PhoneNumberRecord,
    ProvisionJob,
    assignable_problem,
    country_of,
    friendly_default,
    get_number_prices,
    is_toll_free,
    paid,
    rent_amount,
    rent_key,
    rents,
    trial_expiry,
    unpaid,
)
from talkturo.domain.telephony import NumberSearch
from talkturo.domain.usage import UsageTags
from talkturo.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound, TalkturoError
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.services import accounts, credits
from talkturo.store import numbers as store
from talkturo.store.transact import Refused

if TYPE_CHECKING:
    from talkturo.carrier.base import Carrier

# Attempts at a read-modify-write of a number when other writes land in between.
ATTEMPTS = 5
# How many past days the expiry sweep looks at (it runs hourly; days before were swept).
SWEEP_DAYS = 7
# How many past days the renewal sweep looks at (a renewal that kept failing stays due in its
# day's index; longer than a month of outage is beyond it).
RENT_SWEEP_DAYS = 35


class TrialNumberLimit(TalkturoError):
    status = 402
    type = "billing_error"
    code = "trial_number_limit"


# --------------------------------------------------------------------------- the carrier


def carrier_of(carrier: Carrier | None = None) -> Carrier:
    if carrier is not None:
        return carrier
    from talkturo.carrier import get_carrier  # imported on use: search and buy only

    return get_carrier()


# --------------------------------------------------------------------------- search and buy


def search(query: NumberSearch, carrier: Carrier | None = None) -> AvailableList:
    price = get_number_prices().price(query.country, query.type)
    offered = carrier_of(carrier).search_numbers(query)
    return AvailableList(
        data=[
            AvailablePhoneNumber(
                **number.model_dump(),
                monthly_price_cents=price.monthly,
                setup_price_cents=price.setup,
            )
            for number in offered
        ]
    )


def buy(account_id: str, request: PhoneNumberBuy) -> PhoneNumber:
    """Record the number as purchasing and queue its provisioning; answers at once."""
    country = country_of(request.phone_number)
    if country is None:
        raise InvalidRequest(
            "phone_number must be a number of AE, US, CA, DE, AT or CH, as listed by "
            "GET /v1/phone-numbers/available",
            param="phone_number",
        )
    number_type = "toll_free" if is_toll_free(request.phone_number) else "local"
    price = get_number_prices().price(country, number_type)
    account = accounts.get_account(account_id)
    now = utcnow()
    trial = account.plan == "free"
    record = PhoneNumberRecord(
        id=new_id("phone_number"),
        phone_number=request.phone_number,
        country=country,
        type=number_type,
        friendly_name=request.friendly_name or friendly_default(request.phone_number),
        status="purchasing",
        monthly_price_cents=price.monthly,
        setup_price_cents=price.setup,
        trial=trial,
        expires_at=trial_expiry(now) if trial else None,
        monthly_credits=Decimal(0) if trial else credits_of_cents(price.monthly),
        created_at=now,
        updated_at=now,
    )
    if rents(record):
        _check_covered(account_id, rent_amount(record, 0))
    try:
        store.create(account_id, record)
    except Conflict as conflict:
        if conflict.code == "trial_slot_taken":
            raise _trial_limit() from None
        raise
    try:
        queues.send(
            get_settings().number_provisioning_queue_url,
            ProvisionJob(account_id=account_id, number_id=record.id).model_dump(),
        )
    except (BotoCoreError, ClientError, RuntimeError):
        logger.exception("number provisioning could not be queued", extra={"id": record.id})
        _fail(account_id, record.id, "the purchase could not be queued; buy the number again")
        raise
    return record.public()


def _check_covered(account_id: str, amount: Decimal) -> None:
    """402 before anything is written when the balance cannot pay the first month (the
    provisioning worker charges it; this spares a purchase bound to fail)."""
    have = credits.balance(account_id).balance
    if have < amount:
        raise InsufficientCredits(
            f"the number costs {amount:.4f} credits now (its setup and first month); the "
            f"balance is {have:.4f}: buy credits first",
            param="phone_number",
        )


def _trial_limit() -> TrialNumberLimit:
    return TrialNumberLimit(
        f"the free plan includes {TRIAL_LIMIT} trial number at a time (it is released 5 days "
        "after purchase). Buy credits to lift the limit and keep your numbers.",
        param="phone_number",
    )


# --------------------------------------------------------------------------- provisioning


def provision(job: ProvisionJob, carrier: Carrier | None = None) -> None:
    """Buy the number at the carrier and move it to active or error; idempotent.

    A retryable carrier error raises (the message comes back); any other carrier refusal puts
    the number in `error` with the carrier's message.
    """
    from talkturo.carrier.base import CarrierError

    try:
        record, _ = store.get(job.account_id, job.number_id)
    except NotFound:
        logger.warning("number to provision is gone", extra={"id": job.number_id})
        return
    if record.status != "purchasing":
        return  # done by an earlier delivery
    if rents(record) and not _charge_rent(job.account_id, record, 0):
        _fail(
            job.account_id,
            job.number_id,
            f"the balance did not cover the number's setup and first month "
            f"({rent_amount(record, 0):.4f} credits); buy credits, then buy the number again",
        )
        return
    base = get_settings().public_base_url.rstrip("/")
    try:
        bought = carrier_of(carrier).buy_number(
            record.phone_number,
            voice_url=f"{base}/carrier/voice",
            status_callback_url=f"{base}/carrier/status",
        )
    except CarrierError as error:
        if error.retryable:
            raise
        _fail(job.account_id, job.number_id, error.message)
        return
    now = utcnow()

    def activate(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.status != "purchasing":
            return None
        active = r.model_copy(update={"status": "active", "carrier_sid": bought.carrier_sid})
        return paid(active, 0, now) if rents(active) else active

    _change(job.account_id, job.number_id, activate)
    logger.info("number provisioned", extra={"id": job.number_id})


DEAD_LETTER_MESSAGE = (
    "the carrier did not confirm the purchase after repeated attempts; the number is not "
    "billed: buy it again"
)


def fail_dead_job(job: ProvisionJob) -> Outcome:
    """The provisioning message is a dead letter: a number still `purchasing` ends `error`,
    freed like any failed purchase. Idempotent: a number that moved on is left as it is."""
    try:
        record, _ = store.get(job.account_id, job.number_id)
    except NotFound:
        return Outcome(
            account_id=job.account_id,
            job=job.number_id,
            action="already_ended",
            reason="the number no longer exists",
        )
    if record.status != "purchasing":
        return Outcome(
            account_id=job.account_id,
            job=job.number_id,
            action="already_ended",
            reason=f"the number was already {record.status}",
        )
    after = _fail(job.account_id, job.number_id, DEAD_LETTER_MESSAGE)
    if after.error_message != DEAD_LETTER_MESSAGE:  # provisioned (or failed) meanwhile
        return Outcome(
            account_id=job.account_id,
            job=job.number_id,
            action="already_ended",
            reason=f"the number was already {after.status}",
        )
    return Outcome(
        account_id=job.account_id, job=job.number_id, action="ended", reason=DEAD_LETTER_MESSAGE
    )


def _fail(account_id: str, number_id: str, message: str) -> PhoneNumberRecord:
    """purchasing → error, freeing the routing item and the trial slot (nothing was bought);
    a first month already charged is given back."""
    failed = _change(
        account_id,
        number_id,
        lambda r: (
            r.model_copy(update={"status": "error", "error_message": message})
            if r.status == "purchasing"
            else None
        ),
        free_routing=True,
    )
    if failed.status == "error":
        _return_first_rent(account_id, failed)
    return failed


def _return_first_rent(account_id: str, record: PhoneNumberRecord) -> None:
    """The number was never bought: its setup and first month come back (once, by key)."""
    from talkturo.store import ledger

    key = rent_key(record.id, 0)
    charged = ledger.entry_for_key(account_id, key)
    if charged is None:
        return
    credits.record(
        account_id,
        "adjustment",
        -charged.amount,
        idempotency_key=f"{key}:returned",
        description=f"phone number {record.phone_number} was not bought: its charge returned",
        reference=record.id,
        usage=UsageTags(category="numbers", phone_number_id=record.id),
    )


def _change(
    account_id: str,
    number_id: str,
    change: Callable[[PhoneNumberRecord], PhoneNumberRecord | None],
    *,
    free_routing: bool = False,
) -> PhoneNumberRecord:
    """Read, apply `change` (record → new record, or None for no change), write conditionally;
    again when another write landed in between. Answers the number as it is after."""
    for _ in range(ATTEMPTS):
        before, version = store.get(account_id, number_id)
        after = change(before)
        if after is None:
            return before
        after = after.model_copy(update={"updated_at": utcnow()})
        try:
            store.update(account_id, before, version, after, free_routing=free_routing)
        except store.Stale:
            continue
        if after.status != before.status:
            _announce(account_id, before.status, after, version)
        return after
    raise Conflict("the phone number changed at the same time; try again")


def _announce(account_id: str, previous: str, record: PhoneNumberRecord, version: int) -> None:
    """`number.status_changed`, once per move (keyed on the version the move was made from)."""
    from talkturo.services import events

    events.emit(
        account_id,
        "number.status_changed",
        {
            "phone_number": record.public().model_dump(mode="json"),
            "previous_status": previous,
            "status": record.status,
        },
        key=f"number.status_changed:{record.id}:{version}",
    )


# --------------------------------------------------------------------------- reads and edits


def _check_id(number_id: str) -> None:
    if not has_prefix(number_id, "phone_number"):
        raise NotFound("no such phone number", param="id")


def get(account_id: str, number_id: str) -> PhoneNumber:
    _check_id(number_id)
    record, _ = store.get(account_id, number_id)
    return record.public()


def get_record(account_id: str, number_id: str) -> PhoneNumberRecord:
    """The stored number, carrier SID included: for the parts that place and route calls."""
    _check_id(number_id)
    record, _ = store.get(account_id, number_id)
    return record


def account_of(number_id: str) -> str:
    """The account holding a number (operators only: admin routes)."""
    _check_id(number_id)
    return store.account_of(number_id)


def list_numbers(
    account_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None = None,
    assistant_id: str | None = None,
) -> Page[PhoneNumber]:
    records, cursor = store.list_page(
        account_id,
        limit=limit,
        starting_after=starting_after,
        status=status,
        assistant_id=assistant_id,
    )
    return Page[PhoneNumber](
        data=[r.public() for r in records], has_more=cursor is not None, next_cursor=cursor
    )


def rename(account_id: str, number_id: str, friendly_name: str) -> PhoneNumber:
    _check_id(number_id)

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.status == "released":
            raise Conflict("the number was released", code="number_released")
        return r.model_copy(update={"friendly_name": friendly_name})

    return _change(account_id, number_id, change).public()


# --------------------------------------------------------------------------- assignment


def assign(
    account_id: str, number_id: str, assistant_id: str, *, reassign: bool = False
) -> PhoneNumber:
    """Give the number to the assistant, atomically with both assistants' sets.

    A number assigned to another assistant is moved only with `reassign`; otherwise 409.
    Two requests racing for a free number: one wins, the other reads it taken and gets 409.
    """
    _check_id(number_id)
    if not has_prefix(assistant_id, "assistant"):
        raise NotFound("no such assistant", param="assistant_id")

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        problem = assignable_problem(r)
        if problem:
            raise Conflict(problem, param="id", code="number_not_active")
        if r.assistant_id == assistant_id:
            return None
        if r.assistant_id is not None and not reassign:
            raise Conflict(
                f"the number is already assigned to assistant {r.assistant_id}; unassign it "
                'first, or send "reassign": true to move it',
                param="id",
                code="number_already_assigned",
            )
        return r.model_copy(update={"assistant_id": assistant_id})

    try:
        return _change(account_id, number_id, change).public()
    except Refused as refused:
        if "assistant" in refused.labels:
            raise NotFound("no such assistant", param="assistant_id") from None
        raise


def unassign(account_id: str, number_id: str) -> PhoneNumber:
    _check_id(number_id)

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.assistant_id is None:
            return None
        return r.model_copy(update={"assistant_id": None})

    return _change(account_id, number_id, change).public()


# --------------------------------------------------------------------------- suspension


def suspend(account_id: str, number_id: str) -> PhoneNumber:
    """active → suspended (an operator's decision; the assignment stays for resume)."""
    _check_id(number_id)

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.status == "suspended":
            return None
        if r.status != "active":
            raise Conflict(f"only active numbers can be suspended; this one is {r.status}")
        return r.model_copy(update={"status": "suspended", "suspended_reason": "operator"})

    return _change(account_id, number_id, change).public()


def resume(account_id: str, number_id: str) -> PhoneNumber:
    _check_id(number_id)

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.status == "active":
            return None
        if r.status != "suspended":
            raise Conflict(f"only suspended numbers can be resumed; this one is {r.status}")
        # An unpaid number resumed by an operator stays due: the next sweep charges its rent.
        return r.model_copy(
            update={"status": "active", "suspended_reason": None, "release_at": None}
        )

    return _change(account_id, number_id, change).public()


# --------------------------------------------------------------------------- release


def release(
    account_id: str, number_id: str, carrier: Carrier | None = None, *, unpaid_end: bool = False
) -> PhoneNumber:
    """Unassign, give the number back to the carrier, mark it released, free its routing.

    Releasing a released number answers it as it is (the carrier is not asked again).
    `unpaid_end`: the grace of an unpaid number is over; it goes even from a campaign's
    caller IDs (which pass over numbers that are not active).
    """
    _check_id(number_id)
    record, _ = store.get(account_id, number_id)
    if record.status == "released":
        return record.public()
    if record.status == "purchasing":
        raise Conflict(
            "the number is still being provisioned; release it once it is active or in error",
            code="number_purchasing",
        )
    from talkturo.services import campaigns

    in_use = None if unpaid_end else campaigns.numbers_in_use(account_id).get(number_id)
    if in_use is not None:
        raise Conflict(
            f"the number is a caller ID of campaign {in_use}; finish or cancel the campaign, or "
            "take the number out of its phone_number_ids while it is paused",
            param="id",
            code="number_in_use_by_campaign",
        )
    if record.carrier_sid:
        carrier_of(carrier).release_number(record.carrier_sid)

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.status == "released":
            return None
        return r.model_copy(update={"status": "released", "assistant_id": None})

    released = _change(account_id, number_id, change, free_routing=True)
    logger.info("number released", extra={"id": number_id})
    return released.public()


# --------------------------------------------------------------------------- trial numbers


def lift_trial_expiry(account_id: str) -> int:
    """Make the account's trial numbers permanent (credits were bought); how many changed.

    From then on they pay rent like any number (their setup waived): the first month is due at
    once (collect_rent, which runs after every credit, charges it)."""
    changed = 0
    now = utcnow()
    for record, _ in list(store.all_of(account_id)):
        if not record.trial or record.status == "released":
            continue

        def lift(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
            if not r.trial:
                return None
            return r.model_copy(
                update={
                    "trial": False,
                    "expires_at": None,
                    "setup_waived": True,
                    "monthly_credits": credits_of_cents(r.monthly_price_cents),
                    "renews_at": now,
                }
            )

        _change(account_id, record.id, lift)
        changed += 1
    return changed


def sweep_expired(
    now: datetime | None = None, carrier: Carrier | None = None, days: int = SWEEP_DAYS
) -> list[str]:
    """Release every trial number whose expiry has passed; the ids released.

    Reads the expiry index for today and the `days` days before (no scan). A number whose
    release fails stays in the index and is tried again on the next sweep.
    """
    now = now or utcnow()
    released: list[str] = []
    for back in range(days, -1, -1):
        day = (now - timedelta(days=back)).date().isoformat()
        for account_id, number_id in list(store.expiring(day, now)):
            try:
                record, _ = store.get(account_id, number_id)
                if not record.trial or record.expires_at is None or record.expires_at > now:
                    continue
                release(account_id, number_id, carrier=carrier)
            except Exception:  # noqa: BLE001 (one number's failure must not stop the sweep)
                logger.exception("trial number could not be released", extra={"id": number_id})
                continue
            released.append(number_id)
    return released


# --------------------------------------------------------------------------- rent


def _charge_rent(account_id: str, record: PhoneNumberRecord, period: int) -> bool:
    """Charge month `period` of the number, once (keyed on the number and the period); False
    when the balance cannot pay it."""
    amount = rent_amount(record, period)
    if amount <= 0:
        return True
    what = "setup and first month" if period == 0 else f"month {period + 1}"
    try:
        credits.record(
            account_id,
            "usage",
            -amount,
            idempotency_key=rent_key(record.id, period),
            description=f"phone number {record.phone_number}: {what}",
            reference=record.id,
            usage=UsageTags(category="numbers", phone_number_id=record.id),
        )
    except InsufficientCredits:
        return False
    return True


def renew(
    account_id: str, number_id: str, now: datetime | None = None, carrier: Carrier | None = None
) -> PhoneNumberRecord:
    """Do what the number's rent needs now; idempotent, whoever runs it at once.

    - active and due: charge the month; paid → the next renewal a month on; refused →
      suspended (`unpaid`) for the grace period (number.status_changed tells the account);
    - suspended for rent: charge the month; paid → active again, its months counted from now;
      refused and the grace is over → released.
    """
    now = now or utcnow()
    record, _ = store.get(account_id, number_id)
    if not rents(record):
        return record
    period = record.rent_period
    if record.status == "active":
        if record.renews_at is None or record.renews_at > now:
            return record
        if _charge_rent(account_id, record, period):
            return _change(account_id, number_id, _on_paid(period, now))

        def suspend_unpaid(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
            return unpaid(r, now) if r.status == "active" and r.rent_period == period else None

        suspended = _change(account_id, number_id, suspend_unpaid)
        logger.info("number suspended: rent unpaid", extra={"id": number_id})
        return suspended
    if record.status == "suspended" and record.suspended_reason == "unpaid":
        if _charge_rent(account_id, record, period):
            resumed = _change(account_id, number_id, _on_paid(period, now))
            logger.info("number resumed: rent paid", extra={"id": number_id})
            return resumed
        if record.release_at is not None and record.release_at <= now:
            release(account_id, number_id, carrier=carrier, unpaid_end=True)
            logger.info("number released: rent unpaid after its grace", extra={"id": number_id})
            return store.get(account_id, number_id)[0]
    return record


def _on_paid(period: int, now: datetime) -> Callable[[PhoneNumberRecord], PhoneNumberRecord | None]:
    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.rent_period != period or r.status not in ("active", "suspended"):
            return None  # recorded by another run already
        if r.status == "suspended" and r.suspended_reason != "unpaid":
            return None  # an operator's suspension stays
        return paid(r, period, now)

    return change


def collect_rent(account_id: str, now: datetime | None = None) -> int:
    """Credits arrived: charge what the account's numbers owe (unpaid suspended ones resume,
    a lifted trial pays its first month); how many numbers were charged or resumed."""
    now = now or utcnow()
    done = 0
    for record, _ in list(store.all_of(account_id)):
        owes = record.status == "suspended" and record.suspended_reason == "unpaid"
        owes = owes or (
            record.status == "active" and record.renews_at is not None and record.renews_at <= now
        )
        if not owes or not rents(record):
            continue
        after = renew(account_id, record.id, now)
        done += int(after.rent_period > record.rent_period)
    return done


def sweep_rent(
    now: datetime | None = None, carrier: Carrier | None = None, days: int = RENT_SWEEP_DAYS
) -> list[str]:
    """Renew every number whose rent is due, release unpaid ones whose grace is over; the ids
    looked at. Reads the renewal index for today and the `days` days before (no scan); a
    number whose renewal fails stays in its day's index and is tried again next time."""
    now = now or utcnow()
    seen: list[str] = []
    for back in range(days, -1, -1):
        day = (now - timedelta(days=back)).date().isoformat()
        for account_id, number_id in list(store.rent_due(day, now)):
            try:
                renew(account_id, number_id, now, carrier=carrier)
            except Exception:  # noqa: BLE001 (one number's failure must not stop the sweep)
                logger.exception("number rent could not be renewed", extra={"id": number_id})
                continue
            seen.append(number_id)
    return seen
