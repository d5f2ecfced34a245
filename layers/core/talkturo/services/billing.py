"""Buying credits with Stripe: checkout, the exactly-once grant, refunds, disputes, the billing
worker's events and reconciliation (docs/billing.md).

Credits are granted only by `grant_payment`, keyed on the PaymentIntent id: whichever of
checkout.session.completed, checkout.session.async_payment_succeeded and
payment_intent.succeeded reaches the worker first (in any order, any number of times), the
PaymentIntent is read again from Stripe, must have succeeded and its amount and our metadata
must agree with the package table; the ledger's idempotency keys (`stripe:<pi>:purchase`,
`stripe:<pi>:bonus`) make the two entries happen once. Events are only pointers: nothing but
the ids is read from them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from talkturo.billing.factory import get_gateway
from talkturo.billing.gateway import CustomerMissing, PaymentFailed
from talkturo.config import get_settings
from talkturo.domain import billing as rules
from talkturo.domain.billing import (
    CheckoutCreate,
    CheckoutSession,
    PackageList,
    Payment,
    Purchase,
    SavedCard,
    StripePayment,
)
from talkturo.domain.common import Page, utcnow
from talkturo.errors import InvalidRequest, NotFound
from talkturo.logs import logger
from talkturo.services import accounts, auto_reload, credits
from talkturo.store import billing as store
from talkturo.store import ledger

# Two checkouts with the same body within this window are the same Stripe request (a double
# click answers the same session) unless the API caller sent its own Idempotency-Key.
CHECKOUT_WINDOW_SECONDS = 600

__all__ = [
    "PaymentFailed",
    "apply_event",
    "charge_off_session",
    "grant_payment",
    "packages",
    "reconcile",
    "saved_card",
    "start_checkout",
]


# ----------------------------------------------------------------------------- packages
def packages() -> PackageList:
    return rules.package_list()


def purchase_for(package: str | None, amount_cents: int | None) -> Purchase:
    try:
        return rules.purchase_of(package, amount_cents)
    except ValueError as error:
        name, _, reason = str(error).partition(": ")
        raise InvalidRequest(f"{name}: {reason}", param=name) from None


# ----------------------------------------------------------------------------- customers
def ensure_customer(account_id: str, *, missing: str | None = None) -> str:
    """The account's Stripe customer, created once (our deterministic idempotency key makes a
    concurrent second creation answer the same customer) and kept. `missing`: the kept one
    that Stripe answered it no longer knows (deleted there, or the key is another Stripe
    account's): a new one is created and kept instead, once however many ask at once."""
    kept = store.customer_of(account_id)
    if kept and kept != missing:
        return kept
    account = accounts.get_account(account_id)
    # The first customer's key would answer the missing one again (Stripe keeps a key 24 h).
    key = f"talkturo:customer:{account_id}" + (f":replacing:{kept}" if kept else "")
    customer = get_gateway().create_customer(
        account_id, name=account.name, email=account.email, idempotency_key=key
    )
    if kept:
        logger.warning(
            "the account's Stripe customer is gone at Stripe; a new one is kept",
            extra={"account_id": account_id, "missing": kept, "customer": customer.id},
        )
        return store.replace_customer(account_id, kept, customer.id)
    return store.keep_customer(account_id, customer.id)


def saved_card(account_id: str) -> SavedCard | None:
    """The card saved for off-session payments (at a checkout with save_card), if any: none
    when Stripe no longer knows the account's customer."""
    customer = store.customer_of(account_id)
    if not customer:
        return None
    try:
        cards = get_gateway().saved_cards(customer)
    except CustomerMissing:
        return None
    return cards[0] if cards else None


def charge_off_session(
    account_id: str,
    purchase: Purchase,
    *,
    idempotency_key: str,
    metadata: dict[str, str] | None = None,
) -> StripePayment:
    """Charge the saved card off-session (auto-reload). The credits come through the webhook
    like any purchase. Raises PaymentFailed (declined, authentication_required: never retry
    off-session) or NotFound when no card is saved."""
    card = saved_card(account_id)
    customer = store.customer_of(account_id)
    if card is None or customer is None:
        raise NotFound("the account has no saved card", param="payment_method")
    return get_gateway().charge_saved_card(
        account_id=account_id,
        customer_id=customer,
        payment_method_id=card.id,
        purchase=purchase,
        idempotency_key=idempotency_key,
        extra_metadata=metadata,
    )


# ----------------------------------------------------------------------------- checkout
def _return_url(kind: Literal["success", "cancel"], called_at: str | None) -> str:
    settings = get_settings()
    base = settings.checkout_return_url or (
        (called_at or settings.public_base_url).rstrip("/") + "/billing/return"
    )
    joiner = "&" if "?" in base else "?"
    if kind == "success":
        return f"{base}{joiner}result=success&session_id={{CHECKOUT_SESSION_ID}}"
    return f"{base}{joiner}result=canceled"


def start_checkout(
    account_id: str,
    body: CheckoutCreate,
    *,
    idempotency_key: str | None = None,
    called_at: str | None = None,
) -> CheckoutSession:
    """A Checkout Session for a package or a custom amount. `called_at` (the API's own base
    URL) places the default return page when no TALKTURO_CHECKOUT_RETURN_URL is set."""
    purchase = purchase_for(body.package, body.amount_cents)
    customer = ensure_customer(account_id)
    if idempotency_key:
        stripe_key = f"talkturo:checkout:{account_id}:{idempotency_key}"
    else:
        window = int(utcnow().timestamp()) // CHECKOUT_WINDOW_SECONDS
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
        digest = hashlib.sha256(f"{canonical}|{window}".encode()).hexdigest()[:32]
        stripe_key = f"talkturo:checkout:{account_id}:{digest}"
    description = next(
        (p.name for p in rules.get_packages().packages if p.id == purchase.package),
        f"{purchase.total:.4f}".rstrip("0").rstrip(".") + " credits",
    )

    def create(customer_id: str) -> tuple[str, str, int | None]:
        return get_gateway().create_checkout_session(
            account_id=account_id,
            customer_id=customer_id,
            purchase=purchase,
            description=f"Talkturo: {description}",
            success_url=body.success_url or _return_url("success", called_at),
            cancel_url=body.cancel_url or _return_url("cancel", called_at),
            save_card=body.save_card,
            idempotency_key=stripe_key,
        )

    try:
        session_id, url, expires = create(customer)
    except CustomerMissing:
        # A key is bound to its parameters: the session for the new customer needs its own.
        stripe_key += ":customer-replaced"
        session_id, url, expires = create(ensure_customer(account_id, missing=customer))
    return CheckoutSession(
        id=session_id,
        url=url,
        package=purchase.package,
        amount_cents=purchase.amount_cents,
        credits=purchase.total,
        bonus_credits=purchase.bonus,
        expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
    )


# ----------------------------------------------------------------------------- the grant
@dataclass
class Grant:
    payment_intent_id: str
    granted: bool
    reason: str = ""
    account_id: str | None = None
    purchase: Purchase | None = None
    amount_cents: int = 0


def grant_payment(payment_intent_id: str) -> Grant:
    """The credits of a succeeded PaymentIntent, exactly once whatever calls this and how often.

    Reads the PaymentIntent from Stripe (never from an event or a redirect); grants nothing
    when it has not succeeded, is not ours, or its amount and metadata disagree with the
    package table (the reason is logged and answered)."""
    intent = get_gateway().payment_intent(payment_intent_id)
    if intent.status != "succeeded":
        return Grant(payment_intent_id, False, f"the payment is {intent.status}")
    account_id = intent.account_id
    if not account_id:
        return Grant(payment_intent_id, False, "the payment names no account of ours")
    try:
        purchase = rules.purchase_from_payment(intent.amount, intent.currency, intent.metadata)
    except ValueError as error:
        logger.warning(
            "a payment does not match its package; no credits granted",
            extra={"payment_intent": intent.id, "account_id": account_id, "reason": str(error)},
        )
        return Grant(payment_intent_id, False, str(error), account_id)
    if intent.amount_received < intent.amount:
        return Grant(payment_intent_id, False, "the payment was not received in full", account_id)
    try:
        accounts.get_account(account_id)
    except NotFound:
        logger.warning("a payment names an unknown account", extra={"payment_intent": intent.id})
        return Grant(payment_intent_id, False, "no such account", account_id)
    customers = store.customers_of(account_id)
    if customers and intent.customer and intent.customer not in customers:
        logger.warning(
            "a payment's customer is not the account's; no credits granted",
            extra={"payment_intent": intent.id, "account_id": account_id},
        )
        return Grant(payment_intent_id, False, "the payment's customer is not the account's")
    created = datetime.fromtimestamp(intent.created, UTC) if intent.created else utcnow()
    store.record_payment(
        account_id,
        Payment(
            id=intent.id,
            package=purchase.package,
            amount_cents=intent.amount,
            credits=purchase.total,
            bonus_credits=purchase.bonus,
            created_at=created,
            auto_reload=rules.META_RELOAD in intent.metadata,
        ),
    )
    credits.record(
        account_id,
        "purchase",
        purchase.credits,
        idempotency_key=rules.purchase_key(intent.id),
        description=f"Stripe payment of ${intent.amount / 100:,.2f}",
        reference=intent.id,
    )
    if purchase.bonus > 0:
        credits.record(
            account_id,
            "bonus",
            purchase.bonus,
            idempotency_key=rules.bonus_key(intent.id),
            description=f"Bonus of package {purchase.package}",
            reference=intent.id,
        )
    reload_sequence = intent.metadata.get(rules.META_RELOAD, "")
    if reload_sequence.isdigit():
        auto_reload.reload_landed(account_id, int(reload_sequence), intent.id)
    return Grant(payment_intent_id, True, "", account_id, purchase, intent.amount)


# ----------------------------------------------------------------------------- refunds, disputes
def apply_refunds(charge_id: str) -> str:
    """Take back, pro rata and bonus included, the credits of each refund of a charge, once per
    refund id (charge.refunded comes on every partial refund; its amount is cumulative). A
    refund that failed afterwards (its money never reached the buyer) gives them back, once:
    both entries are written whatever was seen before, so they cancel out in any order."""
    gateway = get_gateway()
    charge = gateway.charge(charge_id)
    if not charge.payment_intent:
        return "the charge has no payment intent"
    grant = grant_payment(charge.payment_intent)  # a refund that arrives first still counts
    if not grant.granted or grant.purchase is None or grant.account_id is None:
        return f"no credits to take back: {grant.reason}"
    taken = returned = refunded = 0
    seen = False
    for refund in gateway.refunds_of_charge(charge.id):
        if refund.status not in ("succeeded", "failed"):
            continue  # pending or requires_action: nothing moved yet
        seen = True
        share = rules.pro_rata(grant.purchase.total, refund.amount, grant.amount_cents)
        if refund.status == "succeeded":
            refunded += refund.amount
        if share <= 0:
            continue
        credits.record(
            grant.account_id,
            "payment_refund",
            -share,
            idempotency_key=rules.refund_key(charge.payment_intent, refund.id),
            description=f"Stripe refund of ${refund.amount / 100:,.2f}",
            reference=refund.id,
            allow_negative_balance=True,
        )
        taken += 1
        if refund.status == "failed":
            credits.record(
                grant.account_id,
                "payment_refund",
                share,
                idempotency_key=rules.failed_refund_key(charge.payment_intent, refund.id),
                description=f"Stripe refund of ${refund.amount / 100:,.2f} failed: given back",
                reference=refund.id,
            )
            returned += 1
    status: Literal["succeeded", "partially_refunded", "refunded", "disputed"] = (
        "refunded" if refunded >= grant.amount_cents else "partially_refunded"
    )
    if seen and not refunded:  # every refund failed: the payment is as before its refunds
        recorded = store.get_payment(grant.account_id, charge.payment_intent)
        status = "disputed" if recorded and recorded.disputed_cents else "succeeded"
    if seen:
        store.update_payment(
            grant.account_id, charge.payment_intent, refunded_cents=refunded, status=status
        )
    return f"{taken} refund(s) applied, {returned} failed and given back"


def apply_dispute(dispute_id: str) -> str:
    """A disputed payment's credits are taken back when the dispute opens (pro rata of the
    disputed amount) and given back when it closes won."""
    gateway = get_gateway()
    dispute = gateway.dispute(dispute_id)
    intent_id = dispute.payment_intent
    if not intent_id and dispute.charge:
        intent_id = gateway.charge(dispute.charge).payment_intent
    if not intent_id:
        return "the dispute names no payment"
    grant = grant_payment(intent_id)
    if not grant.granted or grant.purchase is None or grant.account_id is None:
        return f"no credits to take back: {grant.reason}"
    share = rules.pro_rata(grant.purchase.total, dispute.amount, grant.amount_cents)
    if share <= 0:
        return "nothing disputed"
    credits.record(
        grant.account_id,
        "dispute",
        -share,
        idempotency_key=rules.dispute_key(intent_id, dispute.id, "opened"),
        description=f"Stripe dispute of ${dispute.amount / 100:,.2f} opened",
        reference=dispute.id,
        allow_negative_balance=True,
    )
    if dispute.won:
        credits.record(
            grant.account_id,
            "dispute",
            share,
            idempotency_key=rules.dispute_key(intent_id, dispute.id, "won"),
            description=f"Stripe dispute of ${dispute.amount / 100:,.2f} won",
            reference=dispute.id,
        )
    store.update_payment(
        grant.account_id,
        intent_id,
        disputed_cents=0 if dispute.won else dispute.amount,
        status="succeeded" if dispute.won else "disputed",
    )
    return f"dispute {dispute.status}"


# ----------------------------------------------------------------------------- the worker
def apply_event(event_id: str) -> str:
    """Apply one stored Stripe event (the billing worker). Safe to run any number of times."""
    stored = store.get_event(event_id)
    if stored is None:
        return "no such event"
    event: dict[str, Any] = json.loads(stored.body)
    kind = str(event.get("type") or "")
    obj: dict[str, Any] = (event.get("data") or {}).get("object") or {}
    outcome = "ignored"
    if kind in rules.GRANTING_EVENTS:
        intent_id: str | None = None
        if obj.get("object") == "payment_intent":
            intent_id = _id(obj.get("id"))
        elif obj.get("object") == "checkout.session" and obj.get("id"):
            intent_id = get_gateway().checkout_session_payment(str(obj["id"]))
        if intent_id:
            grant = grant_payment(intent_id)
            outcome = "granted" if grant.granted else f"not granted: {grant.reason}"
        else:
            outcome = "no payment yet"
    elif kind in rules.REFUND_EVENTS:
        charge = _id(obj.get("id")) if obj.get("object") == "charge" else _id(obj.get("charge"))
        outcome = apply_refunds(charge) if charge else "no charge"
    elif kind in rules.DISPUTE_EVENTS and obj.get("id"):
        outcome = apply_dispute(str(obj["id"]))
    store.mark_applied(event_id, outcome)
    logger.info("stripe event applied", extra={"event": event_id, "type": kind, "outcome": outcome})
    return outcome


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


# ----------------------------------------------------------------------------- reading
def payments(account_id: str, *, limit: int, starting_after: str | None) -> Page[Payment]:
    data, cursor = store.list_payments(account_id, limit=limit, starting_after=starting_after)
    return Page[Payment](data=data, has_more=cursor is not None, next_cursor=cursor)


# ----------------------------------------------------------------------------- reconciliation
@dataclass
class Difference:
    # missing_grant, amount_mismatch, missing_refund, missing_refund_return, missing_dispute,
    # unknown_payment
    kind: str
    stripe_id: str
    account_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stripe_id": self.stripe_id,
            "account_id": self.account_id,
            "detail": self.detail,
        }


@dataclass
class Reconciliation:
    since: datetime
    payments: int = 0
    refunds: int = 0
    disputes: int = 0
    not_ours: int = 0
    differences: list[Difference] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": "reconciliation",
            "since": self.since.isoformat(),
            "payments": self.payments,
            "refunds": self.refunds,
            "disputes": self.disputes,
            "not_ours": self.not_ours,
            "differences": [d.as_dict() for d in self.differences],
        }


def _entry_amount(account_id: str, key: str) -> Decimal | None:
    """The amount of the entry `key` made; None when it made none, or when that entry is gone
    (its guard left behind: the credits are not in the ledger either way)."""
    try:
        entry = ledger.entry_for_key(account_id, key)
    except NotFound:
        return None
    return None if entry is None else entry.amount


def reconcile(since: datetime, until: datetime | None = None) -> Reconciliation:
    """Stripe's payments, refunds and disputes created since `since`, against the ledger: every
    succeeded payment of ours granted its credits once, every refund and dispute taken back,
    and no payment recorded here that Stripe does not know as succeeded."""
    gateway = get_gateway()
    until = until or utcnow()
    report = Reconciliation(since=since)
    start = int(since.timestamp())
    intents: dict[str, StripePayment] = {}
    for intent in gateway.payments_since(start):
        intents[intent.id] = intent
        if not intent.account_id:
            report.not_ours += 1
            continue
        if intent.status != "succeeded":
            continue
        report.payments += 1
        _check_payment(report, intent)
    for refund in gateway.refunds_since(start):
        if refund.status not in ("succeeded", "failed") or not refund.payment_intent:
            continue
        intent = intents.get(refund.payment_intent) or gateway.payment_intent(refund.payment_intent)
        if not intent.account_id:
            continue
        report.refunds += 1
        expected = _share(intent, refund.amount)
        if expected is None:  # its payment granted nothing (reported as amount_mismatch)
            continue
        found = _entry_amount(intent.account_id, rules.refund_key(intent.id, refund.id))
        if refund.status == "failed":
            # Nothing owed in the end: what it took (if anything) must have been given back.
            back = _entry_amount(intent.account_id, rules.failed_refund_key(intent.id, refund.id))
            if found is not None and back != expected:
                report.differences.append(
                    Difference(
                        "missing_refund_return",
                        refund.id,
                        intent.account_id,
                        f"{expected} credits taken by a failed refund, not given back",
                    )
                )
            continue
        if found is None:
            report.differences.append(
                Difference("missing_refund", refund.id, intent.account_id, f"{expected} credits")
            )
        elif found != -expected:
            report.differences.append(
                Difference(
                    "amount_mismatch", refund.id, intent.account_id, f"{found} != -{expected}"
                )
            )
    for dispute in gateway.disputes_since(start):
        if not dispute.payment_intent:
            continue
        intent = intents.get(dispute.payment_intent) or gateway.payment_intent(
            dispute.payment_intent
        )
        if not intent.account_id:
            continue
        report.disputes += 1
        if _share(intent, dispute.amount) is None:  # as for refunds: nothing granted, none owed
            continue
        steps: list[Literal["opened", "won"]] = ["opened", "won"] if dispute.won else ["opened"]
        for step in steps:
            key = rules.dispute_key(intent.id, dispute.id, step)
            if _entry_amount(intent.account_id, key) is None:
                report.differences.append(
                    Difference("missing_dispute", dispute.id, intent.account_id, f"{step} entry")
                )
    for account_id, payment in store.payments_between(since - timedelta(minutes=5), until):
        stripe_side = intents.get(payment.id) or gateway.find_payment_intent(payment.id)
        if stripe_side is None or stripe_side.status != "succeeded":
            where = f"{stripe_side.status} at Stripe" if stripe_side else "unknown to Stripe"
            report.differences.append(
                Difference("unknown_payment", payment.id, account_id, f"recorded here, {where}")
            )
    return report


def _share(intent: StripePayment, part_cents: int) -> Decimal | None:
    try:
        purchase = rules.purchase_from_payment(intent.amount, intent.currency, intent.metadata)
    except ValueError:
        return None
    return rules.pro_rata(purchase.total, part_cents, intent.amount)


def _check_payment(report: Reconciliation, intent: StripePayment) -> None:
    account_id = intent.account_id
    assert account_id is not None
    try:
        purchase = rules.purchase_from_payment(intent.amount, intent.currency, intent.metadata)
    except ValueError as error:
        report.differences.append(Difference("amount_mismatch", intent.id, account_id, str(error)))
        return
    granted = _entry_amount(account_id, rules.purchase_key(intent.id))
    if granted is None:
        report.differences.append(
            Difference("missing_grant", intent.id, account_id, f"{purchase.total} credits")
        )
        return
    bonus = _entry_amount(account_id, rules.bonus_key(intent.id)) or Decimal(0)
    if granted + bonus != purchase.total:
        report.differences.append(
            Difference(
                "amount_mismatch",
                intent.id,
                account_id,
                f"ledger {granted + bonus}, payment {purchase.total}",
            )
        )
