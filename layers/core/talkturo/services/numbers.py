"""Phone numbers: search, buy (provisioned in the background), assign, release, trial expiry.

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
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.common import Page, utcnow
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
    trial_expiry,
)
from talkturo.domain.telephony import NumberSearch
from talkturo.errors import Conflict, InvalidRequest, NotFound, TalkturoError
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.services import accounts
from talkturo.store import numbers as store
from talkturo.store.transact import Refused

if TYPE_CHECKING:
    from talkturo.carrier.base import Carrier

# Attempts at a read-modify-write of a number when other writes land in between.
ATTEMPTS = 5
# How many past days the expiry sweep looks at (it runs hourly; days before were swept).
SWEEP_DAYS = 7


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
        created_at=now,
        updated_at=now,
    )
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
    _change(
        job.account_id,
        job.number_id,
        lambda r: (
            r.model_copy(update={"status": "active", "carrier_sid": bought.carrier_sid})
            if r.status == "purchasing"
            else None
        ),
    )
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
    """purchasing → error, freeing the routing item and the trial slot (nothing was bought)."""
    return _change(
        account_id,
        number_id,
        lambda r: (
            r.model_copy(update={"status": "error", "error_message": message})
            if r.status == "purchasing"
            else None
        ),
        free_routing=True,
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
        return r.model_copy(update={"status": "suspended"})

    return _change(account_id, number_id, change).public()


def resume(account_id: str, number_id: str) -> PhoneNumber:
    _check_id(number_id)

    def change(r: PhoneNumberRecord) -> PhoneNumberRecord | None:
        if r.status == "active":
            return None
        if r.status != "suspended":
            raise Conflict(f"only suspended numbers can be resumed; this one is {r.status}")
        return r.model_copy(update={"status": "active"})

    return _change(account_id, number_id, change).public()


# --------------------------------------------------------------------------- release


def release(account_id: str, number_id: str, carrier: Carrier | None = None) -> PhoneNumber:
    """Unassign, give the number back to the carrier, mark it released, free its routing.

    Releasing a released number answers it as it is (the carrier is not asked again).
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

    in_use = campaigns.numbers_in_use(account_id).get(number_id)
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
    """Make the account's trial numbers permanent (credits were bought); how many changed."""
    changed = 0
    for record, _ in list(store.all_of(account_id)):
        if not record.trial or record.status == "released":
            continue
        _change(
            account_id,
            record.id,
            lambda r: (
                r.model_copy(update={"trial": False, "expires_at": None}) if r.trial else None
            ),
        )
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
