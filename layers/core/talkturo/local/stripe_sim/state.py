"""The Stripe simulator's objects and what happens to them (no HTTP here: app.py serves it).

Objects are kept as Stripe's JSON shapes (plain dicts): customers, Checkout Sessions, payment
methods, PaymentIntents, charges, refunds, disputes and events. Every change that Stripe
announces makes its event(s) and hands them to the webhook sender. One lock guards it all: the
simulator serves one developer, not a load test.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class StripeApiError(Exception):
    """An answer in Stripe's error shape: {"error": {"type", "code", "message", "param", …}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type, "message": message}
        if code:
            self.body["code"] = code
        if param:
            self.body["param"] = param
        self.body.update(extra)


def missing(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str
    label: str
    # What happens: "succeed", "decline", "authenticate" (on-session needs 3D Secure; once set up,
    # off-session payments pass), "always_authenticate" (off-session payments need it too),
    # "decline_after_attach" (saved fine, every later charge is declined).
    behaviour: str
    decline_code: str | None = None

    @property
    def last4(self) -> str:
        return self.number[-4:]


TEST_CARDS: dict[str, TestCard] = {
    card.number: card
    for card in (
        TestCard("4242424242424242", "visa", "Succeeds", "succeed"),
        TestCard("4000000000000002", "visa", "Declined", "decline", "generic_decline"),
        TestCard("4000000000009995", "visa", "Insufficient funds", "decline", "insufficient_funds"),
        TestCard("4000002500003155", "visa", "Needs authentication", "authenticate"),
        TestCard("4000002760003184", "visa", "Always needs authentication", "always_authenticate"),
        TestCard(
            "4000000000000341",
            "visa",
            "Saved, then declined",
            "decline_after_attach",
            "generic_decline",
        ),
    )
}
# Stripe's test payment method tokens, as the API accepts them.
TEST_TOKENS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_chargeCustomerFail": "4000000000000341",
}
DELAYED = "delayed"  # a bank debit: processing first, succeeded a moment later


class StripeState:
    def __init__(self, *, base_url: str, emit: Callable[[list[dict[str, Any]]], None]) -> None:
        self.base_url = base_url
        self._emit = emit
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            kind: {}
            for kind in (
                "customer",
                "checkout.session",
                "payment_method",
                "payment_intent",
                "charge",
                "refund",
                "dispute",
                "event",
                "webhook_endpoint",
            )
        }
        # idempotency key -> (hash of the request, status, answer)
        self.idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self.pending_delays: list[tuple[float, str]] = []

    # ------------------------------------------------------------------------- persistence
    def dump(self) -> dict[str, Any]:
        """Everything a restarted simulator needs, as JSON can hold it: the objects, the
        idempotency keys' answers (a request repeated after the restart is not made twice) and
        the delayed payments still processing (by when they were made, in Unix time)."""
        with self.lock:
            now, wall = time.monotonic(), time.time()
            return {
                "objects": copy.deepcopy(self.objects),
                "idempotency": [
                    [key, digest, status, copy.deepcopy(answer)]
                    for key, (digest, status, answer) in self.idempotency.items()
                ],
                "delayed": [
                    {"payment_intent": intent_id, "made_at": wall - (now - made)}
                    for made, intent_id in self.pending_delays
                ],
            }

    def load(self, saved: dict[str, Any]) -> None:
        with self.lock:
            for kind, found in (saved.get("objects") or {}).items():
                if kind in self.objects:
                    self.objects[kind] = dict(found)
            for key, digest, status, answer in saved.get("idempotency") or []:
                self.idempotency[key] = (digest, int(status), answer)
            now, wall = time.monotonic(), time.time()
            self.pending_delays = [
                (now - max(0.0, wall - float(delayed["made_at"])), delayed["payment_intent"])
                for delayed in saved.get("delayed") or []
            ]

    # ------------------------------------------------------------------------- helpers
    def get(self, kind: str, object_id: str, param: str = "id") -> dict[str, Any]:
        found = self.objects[kind].get(object_id)
        if found is None:
            raise missing(kind.replace(".", " "), object_id, param)
        return found

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["object"]][obj["id"]] = obj
        return obj

    def replay(
        self, key: str | None, request: dict[str, Any], work: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """`work` once per idempotency key: a repeat with the same request gets the same
        answer; with another request, Stripe's idempotency_error."""
        if not key:
            return work(), False
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        with self.lock:
            seen = self.idempotency.get(key)
            if seen is not None:
                if seen[0] != digest:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.",
                        type="idempotency_error",
                    )
                if seen[1] != 200:
                    raise StripeApiError(seen[1], seen[2]["message"], **_extra(seen[2]))
                return copy.deepcopy(seen[2]), True
            try:
                answer = work()
            except StripeApiError as error:
                if error.status == 402:  # Stripe keeps the card error for the key too
                    self.idempotency[key] = (digest, error.status, dict(error.body))
                raise
            self.idempotency[key] = (digest, 200, copy.deepcopy(answer))
            return answer, False

    def event(self, type_: str, obj: dict[str, Any], **previous: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": _public(obj)},
            "livemode": False,
            "pending_webhooks": len(self.objects["webhook_endpoint"]),
            "request": {"id": new_id("req_", 14), "idempotency_key": None},
            "type": type_,
        }
        if previous:
            event["data"]["previous_attributes"] = previous
        self.put(event)
        return event

    def announce(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._emit(events)

    # ------------------------------------------------------------------------- customers
    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            customer = {
                "id": new_id("cus_", 14),
                "object": "customer",
                "created": int(time.time()),
                "email": params.get("email"),
                "name": params.get("name"),
                "description": params.get("description"),
                "metadata": dict(params.get("metadata") or {}),
                "invoice_settings": {"default_payment_method": None},
                "livemode": False,
            }
            return self.put(customer)

    def delete_customer(self, customer_id: str) -> dict[str, Any]:
        """As in Stripe's dashboard or API: gone for good; later requests naming it are
        resource_missing (its saved cards can no longer be charged)."""
        with self.lock:
            self.get("customer", customer_id)
            del self.objects["customer"][customer_id]
            for method in self.objects["payment_method"].values():
                if method.get("customer") == customer_id:
                    method["customer"] = None
        return {"id": customer_id, "object": "customer", "deleted": True}

    # ------------------------------------------------------------------------- checkout
    def create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "payment":
            raise StripeApiError(
                400, "The simulator supports Checkout in payment mode only.", param="mode"
            )
        items = params.get("line_items") or []
        if not items:
            raise StripeApiError(400, "Missing required param: line_items.", param="line_items")
        amount = 0
        for index, item in enumerate(items):
            price = (item or {}).get("price_data") or {}
            if not price.get("unit_amount"):
                raise StripeApiError(
                    400,
                    "Missing required param: line_items[0][price_data][unit_amount].",
                    param=f"line_items[{index}][price_data][unit_amount]",
                )
            amount += int(price["unit_amount"]) * int(item.get("quantity") or 1)
        for name in ("success_url",):
            if not params.get(name):
                raise StripeApiError(400, f"Missing required param: {name}.", param=name)
        with self.lock:
            customer = params.get("customer")
            if customer:
                self.get("customer", customer, "customer")
            session_id = new_id("cs_test_", 58)
            now = int(time.time())
            pi_data = params.get("payment_intent_data") or {}
            session = {
                "id": session_id,
                "object": "checkout.session",
                "amount_subtotal": amount,
                "amount_total": amount,
                "cancel_url": params.get("cancel_url"),
                "client_reference_id": params.get("client_reference_id"),
                "created": now,
                "currency": ((items[0].get("price_data") or {}).get("currency") or "usd"),
                "customer": customer,
                "customer_email": params.get("customer_email"),
                "expires_at": now + 24 * 3600,
                "livemode": False,
                "metadata": dict(params.get("metadata") or {}),
                "mode": "payment",
                "payment_intent": None,
                "payment_status": "unpaid",
                "status": "open",
                "success_url": params.get("success_url"),
                "url": f"{self.base_url}/pay/{session_id}",
                # Not part of Stripe's answer; kept to make the PaymentIntent at payment time.
                "_payment_intent_data": {
                    "metadata": dict(pi_data.get("metadata") or {}),
                    "setup_future_usage": pi_data.get("setup_future_usage"),
                    "description": (
                        (items[0].get("price_data") or {}).get("product_data") or {}
                    ).get("name"),
                },
            }
            return self.put(session)

    def pay_session(self, session_id: str, card_number: str) -> dict[str, Any]:
        """The buyer pays on the hosted page: {"result": "paid"|"declined"|"authenticate"|
        "processing", "message"?, "redirect"?}."""
        with self.lock:
            session = self.get("checkout.session", session_id)
            if session["status"] != "open":
                return {"result": "paid", "redirect": self._success_url(session)}
            delayed = card_number == DELAYED
            card = TEST_CARDS.get("4242424242424242" if delayed else card_number)
            if card is None:
                return {"result": "declined", "message": "Your card number is not a test card."}
            events: list[dict[str, Any]] = []
            intent = self._session_intent(session, card, events)
            if card.behaviour == "decline":
                events += self._fail(intent, "card_declined", card.decline_code)
                self.announce(events)
                return {"result": "declined", "message": "Your card was declined."}
            if card.behaviour in ("authenticate", "always_authenticate"):
                intent["status"] = "requires_action"
                intent["next_action"] = {"type": "use_stripe_sdk"}
                events.append(self.event("payment_intent.requires_action", intent))
                self.announce(events)
                return {"result": "authenticate"}
            if delayed:
                intent["status"] = "processing"
                events.append(self.event("payment_intent.processing", intent))
                self._complete_session(session, intent, paid=False, events=events)
                self.pending_delays.append((time.monotonic(), intent["id"]))
                self.announce(events)
                return {"result": "processing", "redirect": self._success_url(session)}
            self._succeed(intent, events)
            self._complete_session(session, intent, paid=True, events=events)
            self.announce(events)
            return {"result": "paid", "redirect": self._success_url(session)}

    def authenticate_session(self, session_id: str, complete: bool) -> dict[str, Any]:
        with self.lock:
            session = self.get("checkout.session", session_id)
            intent_id = session.get("_pending_intent")
            if session["status"] != "open" or not intent_id:
                return {"result": "paid", "redirect": self._success_url(session)}
            intent = self.get("payment_intent", intent_id)
            events: list[dict[str, Any]] = []
            if not complete:
                events += self._fail(intent, "payment_intent_authentication_failure", None)
                self.announce(events)
                return {"result": "declined", "message": "Authentication failed."}
            intent.pop("next_action", None)
            self._succeed(intent, events)
            self._complete_session(session, intent, paid=True, events=events)
            self.announce(events)
            return {"result": "paid", "redirect": self._success_url(session)}

    def settle_delayed(self, older_than: float) -> None:
        """Delayed payments (bank debits) started before `older_than` (monotonic) succeed."""
        with self.lock:
            due = [p for p in self.pending_delays if p[0] <= older_than]
            self.pending_delays = [p for p in self.pending_delays if p[0] > older_than]
            for _, intent_id in due:
                intent = self.get("payment_intent", intent_id)
                if intent["status"] != "processing":
                    continue
                events: list[dict[str, Any]] = []
                self._succeed(intent, events)
                session = next(
                    (
                        s
                        for s in self.objects["checkout.session"].values()
                        if s.get("payment_intent") == intent_id
                    ),
                    None,
                )
                if session is not None:
                    session["payment_status"] = "paid"
                    events.append(
                        self.event("checkout.session.async_payment_succeeded", _public(session))
                    )
                self.announce(events)

    def _success_url(self, session: dict[str, Any]) -> str:
        return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])

    def _session_intent(
        self, session: dict[str, Any], card: TestCard, events: list[dict[str, Any]]
    ) -> dict[str, Any]:
        data = session["_payment_intent_data"]
        pending = session.get("_pending_intent")
        if pending:
            intent = self.get("payment_intent", pending)
        else:
            intent = self._new_intent(
                amount=session["amount_total"],
                currency=session["currency"],
                customer=session.get("customer"),
                metadata=data["metadata"],
                setup_future_usage=data.get("setup_future_usage"),
                description=data.get("description"),
            )
            session["_pending_intent"] = intent["id"]
            events.append(self.event("payment_intent.created", intent))
        method = self._new_method(card)
        intent["payment_method"] = method["id"]
        intent["status"] = "requires_confirmation"
        return intent

    def _complete_session(
        self,
        session: dict[str, Any],
        intent: dict[str, Any],
        *,
        paid: bool,
        events: list[dict[str, Any]],
    ) -> None:
        session["status"] = "complete"
        session["payment_status"] = "paid" if paid else "unpaid"
        session["payment_intent"] = intent["id"]
        session.pop("_pending_intent", None)
        if intent.get("setup_future_usage") and session.get("customer"):
            self._attach(intent["payment_method"], session["customer"], events)
        events.append(self.event("checkout.session.completed", _public(session)))

    # ------------------------------------------------------------------------- payment methods
    def _new_method(self, card: TestCard) -> dict[str, Any]:
        method = {
            "id": new_id("pm_"),
            "object": "payment_method",
            "type": "card",
            "card": {
                "brand": card.brand,
                "last4": card.last4,
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "country": "US",
            },
            "customer": None,
            "created": int(time.time()),
            "livemode": False,
            "metadata": {},
            "_number": card.number,
        }
        return self.put(method)

    def _attach(self, method_id: str, customer_id: str, events: list[dict[str, Any]]) -> None:
        method = self.get("payment_method", method_id)
        if method.get("customer") == customer_id:
            return
        method["customer"] = customer_id
        method["_set_up"] = True
        events.append(self.event("payment_method.attached", _public(method)))

    def method_for(self, value: str) -> dict[str, Any]:
        if value in TEST_TOKENS:
            return self._new_method(TEST_CARDS[TEST_TOKENS[value]])
        return self.get("payment_method", value, "payment_method")

    def list_methods(self, customer: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                _public(m)
                for m in self.objects["payment_method"].values()
                if customer is None or m.get("customer") == customer
            ]

    # ------------------------------------------------------------------------- payment intents
    def _new_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        metadata: dict[str, Any],
        setup_future_usage: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        intent = {
            "id": new_id("pi_"),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": None,
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(metadata),
            "next_action": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "setup_future_usage": setup_future_usage,
            "status": "requires_payment_method",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{new_id('', 24)}"
        return self.put(intent)

    def create_payment_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        from talkturo.local.stripe_sim.forms import boolean, integer

        if "amount" not in params:
            raise StripeApiError(400, "Missing required param: amount.", param="amount")
        if not params.get("currency"):
            raise StripeApiError(400, "Missing required param: currency.", param="currency")
        try:
            amount = integer(params["amount"], "amount")
        except ValueError:
            raise StripeApiError(400, "Invalid integer: amount", param="amount") from None
        if amount < 50:
            raise StripeApiError(
                400, "Amount must be at least $0.50 usd", code="amount_too_small", param="amount"
            )
        with self.lock:
            customer = params.get("customer")
            if customer:
                self.get("customer", customer, "customer")
            intent = self._new_intent(
                amount=amount,
                currency=str(params["currency"]).lower(),
                customer=customer,
                metadata=dict(params.get("metadata") or {}),
                setup_future_usage=params.get("setup_future_usage"),
                description=params.get("description"),
            )
            events = [self.event("payment_intent.created", intent)]
            if params.get("payment_method"):
                method = self.method_for(str(params["payment_method"]))
                intent["payment_method"] = method["id"]
                intent["status"] = "requires_confirmation"
            if boolean(params.get("confirm", False)):
                off_session = boolean(params.get("off_session", False))
                error = self._confirm(intent, off_session=off_session, events=events)
                self.announce(events)
                if error is not None:
                    raise error
            else:
                self.announce(events)
            return intent

    def _confirm(
        self, intent: dict[str, Any], *, off_session: bool, events: list[dict[str, Any]]
    ) -> StripeApiError | None:
        if not intent.get("payment_method"):
            return StripeApiError(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
                param="payment_method",
            )
        method = self.get("payment_method", intent["payment_method"])
        card = TEST_CARDS[method["_number"]]
        saved = bool(method.get("_set_up"))
        if card.behaviour == "decline" or (card.behaviour == "decline_after_attach" and saved):
            events += self._fail(intent, "card_declined", card.decline_code)
            return self._card_error(intent, "Your card was declined.", "card_declined", card)
        needs_auth = card.behaviour == "always_authenticate" or (
            card.behaviour == "authenticate" and not (off_session and saved)
        )
        if needs_auth:
            if off_session:
                events += self._fail(intent, "authentication_required", "authentication_required")
                return self._card_error(
                    intent,
                    "Your card was declined. This transaction requires authentication.",
                    "authentication_required",
                    card,
                    decline_code="authentication_required",
                )
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk"}
            events.append(self.event("payment_intent.requires_action", intent))
            return None
        self._succeed(intent, events)
        return None

    def _card_error(
        self,
        intent: dict[str, Any],
        message: str,
        code: str,
        card: TestCard,
        *,
        decline_code: str | None = None,
    ) -> StripeApiError:
        extra: dict[str, Any] = {"payment_intent": copy.deepcopy(intent)}
        decline = decline_code or card.decline_code
        if decline:
            extra["decline_code"] = decline
        if intent.get("latest_charge"):
            extra["charge"] = intent["latest_charge"]
        return StripeApiError(402, message, type="card_error", code=code, **extra)

    def _fail(
        self, intent: dict[str, Any], code: str, decline_code: str | None
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if code != "authentication_required" and code != "payment_intent_authentication_failure":
            charge = self._new_charge(intent, status="failed")
            charge["failure_code"] = code
            events.append(self.event("charge.failed", charge))
        intent["status"] = "requires_payment_method"
        intent["next_action"] = None
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": "Your card was declined.",
            "payment_method": _public(self.get("payment_method", intent["payment_method"]))
            if intent.get("payment_method")
            else None,
        }
        events.append(self.event("payment_intent.payment_failed", intent))
        return events

    def _succeed(self, intent: dict[str, Any], events: list[dict[str, Any]]) -> None:
        charge = self._new_charge(intent, status="succeeded")
        intent["status"] = "succeeded"
        intent["amount_received"] = intent["amount"]
        intent["last_payment_error"] = None
        events.append(self.event("charge.succeeded", charge))
        events.append(self.event("payment_intent.succeeded", intent))

    def _new_charge(self, intent: dict[str, Any], *, status: str) -> dict[str, Any]:
        method = self.objects["payment_method"].get(intent.get("payment_method") or "", {})
        charge = {
            "id": new_id("ch_"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if status == "succeeded" else 0,
            "amount_refunded": 0,
            "captured": status == "succeeded",
            "created": int(time.time()),
            "currency": intent["currency"],
            "customer": intent.get("customer"),
            "description": intent.get("description"),
            "disputed": False,
            "failure_code": None,
            "livemode": False,
            "metadata": {},
            "paid": status == "succeeded",
            "payment_intent": intent["id"],
            "payment_method": intent.get("payment_method"),
            "payment_method_details": {"type": "card", "card": dict(method.get("card") or {})},
            "refunded": False,
            "status": status,
        }
        intent["latest_charge"] = charge["id"]
        return self.put(charge)

    # ------------------------------------------------------------------------- refunds
    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        from talkturo.local.stripe_sim.forms import integer

        with self.lock:
            charge_id = params.get("charge")
            intent_id = params.get("payment_intent")
            if not charge_id and not intent_id:
                raise StripeApiError(
                    400, "One of the following params should be provided: charge, payment_intent."
                )
            if intent_id:
                intent = self.get("payment_intent", intent_id, "payment_intent")
                charge_id = intent.get("latest_charge")
                if intent["status"] != "succeeded" or not charge_id:
                    raise StripeApiError(
                        400,
                        f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                        "refund.",
                        code="charge_not_refundable",
                    )
            charge = self.get("charge", str(charge_id), "charge")
            left = charge["amount"] - charge["amount_refunded"]
            try:
                amount = integer(params["amount"], "amount") if "amount" in params else left
            except ValueError:
                raise StripeApiError(400, "Invalid integer: amount", param="amount") from None
            if charge["refunded"] or left <= 0:
                raise StripeApiError(
                    400,
                    f"Charge {charge['id']} has already been refunded.",
                    code="charge_already_refunded",
                )
            if amount <= 0 or amount > left:
                raise StripeApiError(
                    400,
                    f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on "
                    f"charge (${left / 100:.2f})",
                    param="amount",
                )
            refund = {
                "id": new_id("re_"),
                "object": "refund",
                "amount": amount,
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "metadata": dict(params.get("metadata") or {}),
                "payment_intent": charge["payment_intent"],
                "reason": params.get("reason"),
                "status": "succeeded",
            }
            self.put(refund)
            previous = {"amount_refunded": charge["amount_refunded"], "refunded": False}
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            self.announce(
                [
                    self.event("refund.created", refund),
                    self.event("charge.refunded", charge, **previous),
                ]
            )
            return refund

    REFUND_FAILURE_REASONS = ("lost_or_stolen_card", "expired_or_canceled_card", "unknown")

    def fail_refund(self, refund_id: str, reason: str) -> dict[str, Any]:
        """A succeeded refund fails afterwards, as Stripe's do when the card can no longer take
        the money: the refund turns `failed` with its `failure_reason`, the amount counts as
        not refunded on the charge again, and Stripe's events for it go out."""
        if reason not in self.REFUND_FAILURE_REASONS:
            raise StripeApiError(
                400, f"failure_reason must be one of {self.REFUND_FAILURE_REASONS}."
            )
        with self.lock:
            refund = self.get("refund", refund_id)
            if refund["status"] != "succeeded":
                raise StripeApiError(400, f"Refund {refund_id} is {refund['status']}.")
            charge = self.get("charge", refund["charge"], "charge")
            refund["status"] = "failed"
            refund["failure_reason"] = reason
            refund["failure_balance_transaction"] = new_id("txn_")
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            previous = {"status": "succeeded", "failure_reason": None}
            self.announce(
                [
                    self.event("charge.refund.updated", refund, **previous),
                    self.event("refund.updated", refund, **previous),
                    self.event("refund.failed", refund, **previous),
                ]
            )
            return refund

    # ------------------------------------------------------------------------- disputes
    def create_dispute(self, charge_id: str, amount: int | None, reason: str) -> dict[str, Any]:
        with self.lock:
            charge = self.get("charge", charge_id, "charge")
            if charge["status"] != "succeeded":
                raise StripeApiError(400, "Only a succeeded charge can be disputed.")
            dispute = {
                "id": new_id("dp_"),
                "object": "dispute",
                "amount": amount or charge["amount"],
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": charge["payment_intent"],
                "reason": reason,
                "status": "needs_response",
            }
            self.put(dispute)
            charge["disputed"] = True
            self.announce([self.event("charge.dispute.created", dispute)])
            return dispute

    def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        with self.lock:
            dispute = self.get("dispute", dispute_id)
            if dispute["status"] in ("won", "lost"):
                raise StripeApiError(400, f"Dispute {dispute_id} is already closed.")
            previous = {"status": dispute["status"]}
            dispute["status"] = "won" if outcome == "won" else "lost"
            self.announce([self.event("charge.dispute.closed", dispute, **previous)])
            return dispute

    # ------------------------------------------------------------------------- lists
    def page(
        self,
        kind: str,
        params: dict[str, Any],
        path: str,
        keep: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        """A list answer: newest first, `limit`, `starting_after`, `ending_before`,
        `created[gte|gt|lte|lt]`."""
        from talkturo.local.stripe_sim.forms import integer

        with self.lock:
            found = [o for o in self.objects[kind].values() if keep(o)]
        created = params.get("created")
        if isinstance(created, dict):
            bounds = {op: integer(v, "created") for op, v in created.items()}
            found = [o for o in found if _within(int(o.get("created") or 0), bounds)]
        elif created is not None:
            found = [o for o in found if int(o.get("created") or 0) == integer(created, "created")]
        # Newest first; the id breaks ties of one second in creation order (kept stable).
        order = {obj_id: i for i, obj_id in enumerate(self.objects[kind])}
        found.sort(key=lambda o: (int(o.get("created") or 0), order.get(o["id"], 0)), reverse=True)
        limit = max(1, min(100, integer(params.get("limit", 10), "limit")))
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in found]
            if after not in ids:
                raise missing(kind, str(after), "starting_after")
            found = found[ids.index(after) + 1 :]
        return {
            "object": "list",
            "data": [_public(o) for o in found[:limit]],
            "has_more": len(found) > limit,
            "url": path,
        }


def _within(value: int, bounds: dict[str, int]) -> bool:
    checks = {
        "gte": lambda b: value >= b,
        "gt": lambda b: value > b,
        "lte": lambda b: value <= b,
        "lt": lambda b: value < b,
    }
    return all(checks[op](bound) for op, bound in bounds.items() if op in checks)


def _extra(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "message"}


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as Stripe answers it (the simulator's own bookkeeping, `_…`, left out)."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


public = _public
