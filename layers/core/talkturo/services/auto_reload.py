"""Auto-reload (docs/billing.md#auto-reload): the settings, the start of a reload when a usage
draw takes the balance below the threshold, its charge by the billing worker, and what a
pending reload lends a live call.

The draw itself never talks to Stripe: it claims the reload with a conditional write and puts
a message on the billing worker's queue (the voice meter's draw stays fast, and a failed Stripe
call cannot break metering). The worker charges the saved card off-session with the key
`talkturo:reload:<account>:<sequence>`, so a repeated message charges once; the credits come
through Stripe's webhook like any purchase (services.billing.grant_payment).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain import auto_reload as rules
from talkturo.domain.auto_reload import (
    AutoReload,
    AutoReloadUpdate,
    PendingReload,
    ReloadFailure,
    ReloadJob,
)
from talkturo.domain.billing import META_RELOAD, BillingJob, Purchase, purchase_of
from talkturo.domain.common import utcnow
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.logs import logger
from talkturo.store import auto_reload as store
from talkturo.store import ledger
from talkturo.store.auto_reload import AutoReloadItem

_ALL_STATES = ("armed", "pending", "waiting", "capped", "failed")


# ----------------------------------------------------------------------------- reading
def _purchase(package: str) -> Purchase:
    return purchase_of(package, None)


def view(item: AutoReloadItem | None, *, charging_now: bool = False) -> AutoReload:
    if item is None:
        return AutoReload()
    state = item.state if item.enabled else "off"
    try:
        purchase: Purchase | None = _purchase(item.package) if item.package else None
    except ValueError:
        purchase = None  # a package taken off sale: the next reload fails and says so
    now = utcnow()
    pending = None
    if item.state == "pending" and item.pending_since is not None:
        pending = PendingReload(
            sequence=item.sequence,
            since=item.pending_since,
            credits=item.pending_credits or Decimal(0),
            payment_id=item.payment_id,
            counts_until=item.pending_since + rules.PENDING_COUNTS_FOR,
        )
    failure = None
    if item.failure_code and item.failed_at is not None:
        failure = ReloadFailure(
            code=item.failure_code,
            decline_code=item.failure_decline_code,
            message=item.failure_message or "",
            sequence=int(item.failure_sequence or 0),
            at=item.failed_at,
        )
    return AutoReload(
        enabled=item.enabled,
        threshold=item.threshold,
        package=item.package,
        package_credits=purchase.total if purchase else None,
        package_amount_cents=purchase.amount_cents if purchase else None,
        monthly_cap=item.monthly_cap,
        state=state,
        state_message=rules.STATE_MEANING[state],
        month=rules.month_of(now),
        reloaded_this_month=rules.month_credits_now(item.month, item.month_credits, now),
        reloads=int(item.sequence),
        pending=pending,
        last_failure=failure,
        charging_now=charging_now,
        updated_at=item.updated_at,
    )


def get(account_id: str) -> AutoReload:
    return view(store.get(account_id))


# ----------------------------------------------------------------------------- settings
def update(account_id: str, changes: AutoReloadUpdate) -> AutoReload:
    """Change the settings. Turning auto-reload on needs a saved card (409 `no_saved_card`);
    when the balance is already below the threshold, a reload starts now (`charging_now`)."""
    from talkturo.services import billing

    item = store.get(account_id)
    package = changes.package or (item.package if item else None)
    threshold = changes.threshold or (item.threshold if item else None)
    cap = (
        changes.monthly_cap
        if "monthly_cap" in changes.model_fields_set
        else (item.monthly_cap if item else None)
    )
    enabled = changes.enabled if changes.enabled is not None else bool(item and item.enabled)
    purchase = None
    if package:
        if package == "custom":
            raise InvalidRequest(
                "package: a reload buys a package, not a custom amount", param="package"
            )
        try:
            purchase = _purchase(package)
        except ValueError as error:
            name, _, reason = str(error).partition(": ")
            raise InvalidRequest(f"{name}: {reason}", param=name) from None
    if enabled and not package:
        raise InvalidRequest("package: required to turn auto-reload on", param="package")
    if enabled and threshold is None:
        raise InvalidRequest("threshold: required to turn auto-reload on", param="threshold")
    if purchase is not None and cap is not None and cap < purchase.total:
        raise InvalidRequest(
            f"monthly_cap: below the {purchase.total:.4f} credits one reload of {package} buys: "
            "no reload could ever be charged",
            param="monthly_cap",
        )
    if changes.enabled and billing.saved_card(account_id) is None:
        raise Conflict(
            "auto-reload needs a saved card: buy credits once through POST /v1/credits/checkout "
            'with "save_card": true',
            param="payment_method",
            code="no_saved_card",
        )
    now = utcnow()
    if item is None:
        if not store.create(
            {
                "account_id": account_id,
                "enabled": enabled,
                "threshold": threshold,
                "package": package,
                "monthly_cap": cap,
                "state": "armed",
                "updated_at": now,
            }
        ):
            raise Conflict("the auto-reload settings changed at the same time; try again")
    else:
        actions: list[Any] = [
            AutoReloadItem.enabled.set(enabled),
            AutoReloadItem.updated_at.set(now),
        ]
        if threshold is not None:
            actions.append(AutoReloadItem.threshold.set(threshold))
        if package:
            actions.append(AutoReloadItem.package.set(package))
        if cap is None:
            actions.append(AutoReloadItem.monthly_cap.remove())
        else:
            actions.append(AutoReloadItem.monthly_cap.set(cap))
        if changes.enabled and item.state in ("failed", "waiting", "capped"):
            # Turned on again (the card fixed): armed, and the cap is checked at the start.
            actions.append(AutoReloadItem.state.set("armed"))
        if not store.transition(
            account_id, sequence=int(item.sequence), states=[item.state], actions=actions
        ):
            raise Conflict(
                "a reload started or ended while the settings were changed; read them and try "
                "again",
                code="auto_reload_changed",
            )
    started = after_draw(account_id) is not None if enabled else False
    return view(store.get(account_id), charging_now=started)


# ----------------------------------------------------------------------------- the ledger's hooks
def after_draw(account_id: str) -> int | None:
    """A usage draw was written: when it left the balance below the threshold of an armed
    auto-reload, start one reload (the sequence started; None when none did). Of draws that
    cross at once, one claims it (a conditional write on the state and the sequence)."""
    item = store.get(account_id)
    if item is None or not item.enabled or item.threshold is None:
        return None
    now = utcnow()
    if rules.needs_requeue(
        item.state, item.payment_id is not None, item.pending_since, item.requeued_at, now
    ):
        _requeue(account_id, item, now)
        return None
    if not rules.may_start(item.state, item.month, now):
        return None
    balance = ledger.balance(account_id).balance
    if balance >= item.threshold:
        return None
    return _start(account_id, item, balance, now)


def _start(account_id: str, item: AutoReloadItem, balance: Decimal, now: datetime) -> int | None:
    sequence = int(item.sequence)
    counted = rules.month_credits_now(item.month, item.month_credits, now)
    try:
        purchase = _purchase(item.package or "")
    except ValueError:
        purchase = None
    if purchase is None or not rules.within_cap(item.monthly_cap, counted, purchase.total):
        if store.transition(
            account_id,
            sequence=sequence,
            states=[item.state],
            actions=[
                AutoReloadItem.state.set("capped" if purchase else "failed"),
                AutoReloadItem.month.set(rules.month_of(now)),
                AutoReloadItem.month_credits.set(counted),
                AutoReloadItem.updated_at.set(now),
                *(
                    []
                    if purchase
                    else _failure_actions(
                        sequence + 1, "no_such_package", None, "the package is off sale", now
                    )
                ),
            ],
        ):
            reason = "auto_reload_capped" if purchase else "auto_reload_failed"
            # Once per drop (the transition's winner), so the moment tells the drops apart.
            _tell_low(account_id, item, balance, reason, sequence + 1, at=now)
        return None
    if not store.start(
        account_id,
        sequence=sequence,
        state=item.state,
        now=now,
        package=purchase.package,
        credits=purchase.total,
        month=rules.month_of(now),
        month_credits=counted,
    ):
        return None  # another draw started it
    started = sequence + 1
    try:
        _send(account_id, started)
    except Exception:  # noqa: BLE001 - the draw is written; the reload is given back, not lost
        logger.exception("reload could not be queued", extra={"account_id": account_id})
        _give_back(account_id, started, "armed", now)
        return None
    logger.info("reload started", extra={"account_id": account_id, "sequence": started})
    return started


def _send(account_id: str, sequence: int) -> None:
    job = BillingJob(reload=ReloadJob(account_id=account_id, sequence=sequence))
    queues.send(get_settings().billing_event_queue_url, job.model_dump(mode="json"))


def _requeue(account_id: str, item: AutoReloadItem, now: datetime) -> None:
    """Send a pending, uncharged reload's message again (claimed first: one draw sends it)."""
    sequence = int(item.sequence)
    since_last = AutoReloadItem.requeued_at.does_not_exist() | (
        AutoReloadItem.requeued_at <= now - rules.REQUEUE_AFTER
    )
    if not store.transition(
        account_id,
        sequence=sequence,
        states=["pending"],
        condition=AutoReloadItem.payment_id.does_not_exist() & since_last,
        actions=[AutoReloadItem.requeued_at.set(now)],
    ):
        return
    logger.warning(
        "an uncharged reload is queued again",
        extra={"account_id": account_id, "sequence": sequence},
    )
    try:
        _send(account_id, sequence)
    except Exception:  # noqa: BLE001 - the next draw after REQUEUE_AFTER tries again
        logger.exception("reload could not be queued again", extra={"account_id": account_id})


def after_credit(account_id: str) -> None:
    """Credits landed: a reload that is pending, waiting or capped is armed again once the
    balance is at or above the threshold (the next drop charges again)."""
    item = store.get(account_id)
    if item is None or item.threshold is None:
        return
    if item.state not in ("pending", "waiting", "capped"):
        return
    if ledger.balance(account_id).balance < item.threshold:
        return
    store.transition(
        account_id,
        sequence=int(item.sequence),
        states=[item.state],
        actions=[
            AutoReloadItem.state.set("armed"),
            AutoReloadItem.pending_since.remove(),
            AutoReloadItem.pending_credits.remove(),
            AutoReloadItem.updated_at.set(utcnow()),
        ],
    )


def reload_landed(account_id: str, sequence: int, payment_id: str) -> None:
    """Reload `sequence`'s credits were granted: it is pending no more. Still below the
    threshold (after_credit armed it otherwise), it waits for a purchase to lift the balance."""
    store.transition(
        account_id,
        sequence=sequence,
        states=["pending"],
        actions=[
            AutoReloadItem.state.set("waiting"),
            AutoReloadItem.pending_since.remove(),
            AutoReloadItem.pending_credits.remove(),
            AutoReloadItem.payment_id.set(payment_id),
            AutoReloadItem.updated_at.set(utcnow()),
        ],
    )


def pending_allowance(account_id: str) -> Decimal:
    """Credits a live call may draw below zero: a pending reload's, while it counts."""
    item = store.get(account_id)
    if item is None or not item.enabled:
        return Decimal(0)
    if not rules.pending_counts(item.state, item.pending_since, utcnow()):
        return Decimal(0)
    return item.pending_credits or Decimal(0)


# ----------------------------------------------------------------------------- the worker
def charge(job: ReloadJob) -> str:
    """Charge reload `job.sequence` (the billing worker). Safe to run any number of times: the
    Stripe idempotency key is the reload's. A refused card disarms auto-reload, says why and
    tells the account (credits.low); nothing retries it. Stripe unreachable raises (SQS brings
    the message back; the same key charges once)."""
    from talkturo.services import billing

    account_id = job.account_id
    item = store.get(account_id)
    if item is None or item.state != "pending" or int(item.sequence) != job.sequence:
        return "the reload is not pending"
    if item.payment_id:
        return f"charged before: {item.payment_id}"
    if not item.enabled:
        _give_back(account_id, job.sequence, "armed", utcnow())
        return "auto-reload was turned off: not charged"
    try:
        purchase = _purchase(item.pending_package or item.package or "")
    except ValueError:
        _fail(account_id, item, "no_such_package", None, "the package is off sale")
        return "refused: no_such_package"
    try:
        payment = billing.charge_off_session(
            account_id,
            purchase,
            idempotency_key=rules.reload_key(account_id, job.sequence),
            metadata={META_RELOAD: str(job.sequence)},
        )
    except billing.PaymentFailed as refused:
        code = refused.failure_code or "payment_failed"
        _fail(account_id, item, code, refused.decline_code, refused.message)
        return f"refused: {code}"
    except NotFound:
        _fail(account_id, item, "no_saved_card", None, "the account has no saved card")
        return "refused: no_saved_card"
    store.transition(
        account_id,
        sequence=job.sequence,
        states=_ALL_STATES,
        actions=[AutoReloadItem.payment_id.set(payment.id)],
    )
    logger.info(
        "reload charged",
        extra={"account_id": account_id, "sequence": job.sequence, "payment_intent": payment.id},
    )
    return f"charged {payment.id} ({payment.status})"


def fail_lost_job(job: ReloadJob) -> str:
    """The worker never managed to charge (the dead-letter worker): the reload fails like a
    refusal, so the account knows and a live call stops counting on it."""
    item = store.get(job.account_id)
    if item is None or item.state != "pending" or int(item.sequence) != job.sequence:
        return "the reload was not pending"
    _fail(job.account_id, item, "charge_failed", None, "Stripe could not be reached")
    return "the reload failed: Stripe could not be reached"


def _failure_actions(
    sequence: int, code: str, decline_code: str | None, message: str, now: datetime
) -> list[Any]:
    item = AutoReloadItem
    return [
        item.failure_code.set(code),
        (
            item.failure_decline_code.set(decline_code)
            if decline_code
            else item.failure_decline_code.remove()
        ),
        item.failure_message.set(message[:500]),
        item.failure_sequence.set(sequence),
        item.failed_at.set(now),
    ]


def _fail(
    account_id: str, item: AutoReloadItem, code: str, decline_code: str | None, message: str
) -> None:
    now = utcnow()
    sequence = int(item.sequence)
    if store.transition(
        account_id,
        sequence=sequence,
        states=["pending"],
        actions=[
            AutoReloadItem.state.set("failed"),
            AutoReloadItem.month_credits.add(-(item.pending_credits or Decimal(0))),
            AutoReloadItem.pending_since.remove(),
            AutoReloadItem.pending_credits.remove(),
            AutoReloadItem.updated_at.set(now),
            *_failure_actions(sequence, code, decline_code, message, now),
        ],
    ):
        logger.warning(
            "reload refused; auto-reload disarmed",
            extra={"account_id": account_id, "sequence": sequence, "code": code},
        )
        balance = ledger.balance(account_id).balance
        _tell_low(account_id, item, balance, "auto_reload_failed", sequence, failure_code=code)


def _give_back(account_id: str, sequence: int, state: str, now: datetime) -> None:
    """Reload `sequence` was never charged: `state` again, and the month does not count it."""
    item = store.get(account_id)
    if item is None or int(item.sequence) != sequence:
        return
    store.transition(
        account_id,
        sequence=sequence,
        states=["pending"],
        actions=[
            AutoReloadItem.state.set(state),
            AutoReloadItem.month_credits.add(-(item.pending_credits or Decimal(0))),
            AutoReloadItem.pending_since.remove(),
            AutoReloadItem.pending_credits.remove(),
            AutoReloadItem.updated_at.set(now),
        ],
    )


def _tell_low(
    account_id: str,
    item: AutoReloadItem,
    balance: Decimal,
    reason: str,
    sequence: int,
    *,
    failure_code: str | None = None,
    at: datetime | None = None,
) -> None:
    """credits.low, saying that auto-reload did not reload (once per reload that did not)."""
    from talkturo.services import events

    data: dict[str, Any] = {
        "balance": f"{balance:.4f}",
        "threshold": f"{item.threshold or Decimal(0):.4f}",
        "reason": reason,
        "auto_reload": {"sequence": sequence, "package": item.package},
    }
    if failure_code:
        data["auto_reload"]["failure_code"] = failure_code
    if item.monthly_cap is not None:
        data["auto_reload"]["monthly_cap"] = f"{item.monthly_cap:.4f}"
    key = f"credits.low:{reason}:{sequence}" + (f":{at.isoformat()}" if at else "")
    events.emit(account_id, "credits.low", data, key=key)
