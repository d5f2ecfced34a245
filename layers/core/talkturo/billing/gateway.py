"""The billing adapter: the only module that talks to Stripe, through the official SDK.

`StripeGateway` wraps one `stripe.StripeClient`; `base_addresses={"api": url}` points it at the
local Stripe simulator (STRIPE_API_BASE_URL), otherwise it talks to Stripe itself, on the same
code path. Every call that creates or charges passes our own deterministic idempotency key
(the SDK's random one only protects its own retries). Answers come back as the domain's types.

`verify_event` checks a webhook's `Stripe-Signature` on the raw body with
`stripe.Webhook.construct_event` (300 s tolerance) against each configured secret (several
while a secret is rotated), and refuses timestamps from the future beyond the tolerance too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import stripe

from talkturo.domain.billing import (
    META_ACCOUNT,
    Purchase,
    SavedCard,
    StripeCharge,
    StripeCustomer,
    StripeDispute,
    StripePayment,
    StripeRefund,
)
from talkturo.errors import TalkturoError
from talkturo.logs import logger

TOLERANCE_SECONDS = 300


class BillingError(TalkturoError):
    """Stripe refused or failed a request. `detail` (Stripe's own words) is for the log only."""

    status = 502
    type = "billing_error"
    code = "payment_provider_error"

    def __init__(self, message: str, *, detail: str | None = None, param: str | None = None):
        super().__init__(message, param=param)
        self.detail = detail


class BillingNotConfigured(BillingError):
    """No Stripe key is configured (settings or Secrets Manager)."""

    status = 503
    code = "billing_not_configured"


class CustomerMissing(BillingError):
    """Stripe no longer knows the customer we kept (deleted at Stripe, or the key now is
    another Stripe account's): the caller makes a new one."""


class PaymentFailed(BillingError):
    """An off-session payment was refused: `failure_code` is Stripe's (card_declined,
    authentication_required …), `decline_code` the bank's reason when there is one."""

    status = 402
    code = "payment_failed"

    def __init__(
        self,
        message: str,
        *,
        failure_code: str | None,
        decline_code: str | None = None,
        payment_intent_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.failure_code = failure_code
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id

    @property
    def needs_authentication(self) -> bool:
        return self.failure_code == "authentication_required"


class BadSignature(Exception):
    """A webhook whose Stripe-Signature does not verify (the reason is for the log)."""


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain data."""
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        result: dict[str, Any] = obj.to_dict(recursive=True)
        return result
    return dict(obj)


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return str(value.get("id")) if isinstance(value, dict) else str(getattr(value, "id", ""))


def payment_of(data: dict[str, Any]) -> StripePayment:
    error = data.get("last_payment_error") or {}
    return StripePayment(
        id=data["id"],
        status=data.get("status") or "",
        amount=int(data.get("amount") or 0),
        amount_received=int(data.get("amount_received") or 0),
        currency=data.get("currency") or "usd",
        customer=_id(data.get("customer")),
        payment_method=_id(data.get("payment_method")),
        latest_charge=_id(data.get("latest_charge")),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        created=int(data.get("created") or 0),
        failure_code=error.get("code"),
        decline_code=error.get("decline_code"),
    )


def charge_of(data: dict[str, Any]) -> StripeCharge:
    return StripeCharge(
        id=data["id"],
        payment_intent=_id(data.get("payment_intent")),
        amount=int(data.get("amount") or 0),
        amount_refunded=int(data.get("amount_refunded") or 0),
        currency=data.get("currency") or "usd",
        status=data.get("status") or "",
        disputed=bool(data.get("disputed")),
        created=int(data.get("created") or 0),
    )


def refund_of(data: dict[str, Any]) -> StripeRefund:
    return StripeRefund(
        id=data["id"],
        amount=int(data.get("amount") or 0),
        status=data.get("status") or "",
        charge=_id(data.get("charge")),
        payment_intent=_id(data.get("payment_intent")),
        created=int(data.get("created") or 0),
    )


def dispute_of(data: dict[str, Any]) -> StripeDispute:
    return StripeDispute(
        id=data["id"],
        amount=int(data.get("amount") or 0),
        status=data.get("status") or "",
        charge=_id(data.get("charge")),
        payment_intent=_id(data.get("payment_intent")),
        created=int(data.get("created") or 0),
    )


class StripeGateway:
    def __init__(
        self, api_key: str, *, api_base_url: str | None = None, max_network_retries: int = 2
    ) -> None:
        if not api_key:
            raise BillingNotConfigured("payments are not configured on this deployment")
        self.api_base_url = api_base_url or None
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base_url} if api_base_url else None,
            max_network_retries=max_network_retries,
        )

    @property
    def client(self) -> stripe.StripeClient:
        return self._client

    # ------------------------------------------------------------------------- customers
    def create_customer(
        self, account_id: str, *, name: str, email: str | None, idempotency_key: str
    ) -> StripeCustomer:
        params: dict[str, Any] = {"name": name, "metadata": {META_ACCOUNT: account_id}}
        if email:
            params["email"] = email
        with _translated("create a customer"):
            customer = self._client.v1.customers.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        data = _plain(customer)
        return StripeCustomer(id=data["id"], email=data.get("email"), metadata=data["metadata"])

    def saved_cards(self, customer_id: str) -> list[SavedCard]:
        with _translated("list saved cards"):
            page = self._client.v1.payment_methods.list(
                params={"customer": customer_id, "type": "card", "limit": 10}
            )
        cards = []
        for method in _plain(page).get("data", []):
            card = method.get("card") or {}
            cards.append(
                SavedCard(id=method["id"], brand=card.get("brand"), last4=card.get("last4"))
            )
        return cards

    # ------------------------------------------------------------------------- checkout
    def create_checkout_session(
        self,
        *,
        account_id: str,
        customer_id: str,
        purchase: Purchase,
        description: str,
        success_url: str,
        cancel_url: str,
        save_card: bool,
        idempotency_key: str,
    ) -> tuple[str, str, int | None]:
        """A Checkout Session in payment mode: (id, url, expires_at epoch seconds)."""
        payment_intent_data: dict[str, Any] = {"metadata": purchase.metadata(account_id)}
        if save_card:
            payment_intent_data["setup_future_usage"] = "off_session"
        params: dict[str, Any] = {
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": account_id,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": purchase.amount_cents,
                        "product_data": {"name": description},
                    },
                }
            ],
            "payment_intent_data": payment_intent_data,
            "metadata": purchase.metadata(account_id),
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        with _translated("start a checkout"):
            session = self._client.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        data = _plain(session)
        return data["id"], data["url"], data.get("expires_at")

    # ------------------------------------------------------------------------- reading
    def payment_intent(self, payment_intent_id: str) -> StripePayment:
        with _translated("read a payment"):
            return payment_of(_plain(self._client.v1.payment_intents.retrieve(payment_intent_id)))

    def find_payment_intent(self, payment_intent_id: str) -> StripePayment | None:
        """The PaymentIntent, or None when Stripe has no such one (reconciliation asks about
        payments recorded here that Stripe may not know)."""
        try:
            found = self._client.v1.payment_intents.retrieve(payment_intent_id)
        except stripe.InvalidRequestError as error:
            if error.code == "resource_missing":
                return None
            raise _error("read a payment", error) from None
        except stripe.StripeError as error:
            raise _error("read a payment", error) from None
        return payment_of(_plain(found))

    def checkout_session_payment(self, session_id: str) -> str | None:
        """The PaymentIntent of a Checkout Session (None until the buyer has paid)."""
        with _translated("read a checkout session"):
            data = _plain(self._client.v1.checkout.sessions.retrieve(session_id))
        return _id(data.get("payment_intent"))

    def charge(self, charge_id: str) -> StripeCharge:
        with _translated("read a charge"):
            return charge_of(_plain(self._client.v1.charges.retrieve(charge_id)))

    def refunds_of_charge(self, charge_id: str) -> list[StripeRefund]:
        with _translated("list refunds"):
            pages = self._client.v1.refunds.list(params={"charge": charge_id, "limit": 100})
            return [refund_of(_plain(r)) for r in pages.auto_paging_iter()]

    def dispute(self, dispute_id: str) -> StripeDispute:
        with _translated("read a dispute"):
            return dispute_of(_plain(self._client.v1.disputes.retrieve(dispute_id)))

    def payments_since(self, created_gte: int) -> Iterator[StripePayment]:
        with _translated("list payments"):
            pages = self._client.v1.payment_intents.list(
                params={"created": {"gte": created_gte}, "limit": 100}
            )
            for item in pages.auto_paging_iter():
                yield payment_of(_plain(item))

    def refunds_since(self, created_gte: int) -> Iterator[StripeRefund]:
        with _translated("list refunds"):
            pages = self._client.v1.refunds.list(
                params={"created": {"gte": created_gte}, "limit": 100}
            )
            for item in pages.auto_paging_iter():
                yield refund_of(_plain(item))

    def disputes_since(self, created_gte: int) -> Iterator[StripeDispute]:
        with _translated("list disputes"):
            pages = self._client.v1.disputes.list(
                params={"created": {"gte": created_gte}, "limit": 100}
            )
            for item in pages.auto_paging_iter():
                yield dispute_of(_plain(item))

    # ------------------------------------------------------------------------- off-session
    def charge_saved_card(
        self,
        *,
        account_id: str,
        customer_id: str,
        payment_method_id: str,
        purchase: Purchase,
        idempotency_key: str,
        extra_metadata: dict[str, str] | None = None,
    ) -> StripePayment:
        """An off-session PaymentIntent, confirmed at once (auto-reload). Credits still come
        only from the webhook. A refusal raises PaymentFailed (never retry it off-session)."""
        params: dict[str, Any] = {
            "amount": purchase.amount_cents,
            "currency": "usd",
            "customer": customer_id,
            "payment_method": payment_method_id,
            "off_session": True,
            "confirm": True,
            "metadata": {**purchase.metadata(account_id), **(extra_metadata or {})},
        }
        try:
            intent = self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as error:
            raw = error.json_body if isinstance(error.json_body, dict) else {}
            body: dict[str, Any] = dict(raw.get("error") or {})
            raise PaymentFailed(
                "the saved card was refused",
                failure_code=error.code or body.get("code"),
                decline_code=body.get("decline_code"),
                payment_intent_id=_id(body.get("payment_intent")),
                detail=error.user_message or str(error),
            ) from None
        except stripe.StripeError as error:
            raise _error("charge the saved card", error) from None
        return payment_of(_plain(intent))


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Stripe's errors become BillingError (their wording logged, not answered)."""
    try:
        yield
    except stripe.StripeError as error:
        raise _error(what, error) from None


def _error(what: str, error: stripe.StripeError) -> BillingError:
    logger.warning(
        "stripe refused a request",
        extra={"what": what, "stripe_code": error.code, "status": error.http_status},
    )
    if isinstance(error, stripe.AuthenticationError):
        return BillingNotConfigured(f"the payment provider refused our key ({what})")
    if error.code == "resource_missing" and getattr(error, "param", None) == "customer":
        return CustomerMissing(f"the payment provider no longer knows the customer ({what})")
    return BillingError(f"the payment provider could not {what}; try again", detail=str(error))


# ----------------------------------------------------------------------------- webhooks
def verify_event(
    payload: bytes, header: str | None, secrets: list[str], *, tolerance: int = TOLERANCE_SECONDS
) -> dict[str, Any]:
    """The event in a webhook whose signature verifies with one of `secrets` (BadSignature
    otherwise: no header, malformed, no match, too old or too far in the future)."""
    if not header:
        raise BadSignature("no Stripe-Signature header")
    if not secrets:
        raise BadSignature("no webhook secret configured")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSignature("the body is not UTF-8") from None
    # construct_event refuses old timestamps; one from the future is refused here.
    if _timestamp(header) > time.time() + tolerance:
        raise BadSignature("timestamp in the future, outside the tolerance")
    reasons = []
    for secret in secrets:
        try:
            event = stripe.Webhook.construct_event(text, header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError as error:
            reasons.append(str(error))
            continue
        except ValueError:
            raise BadSignature("the body is not a Stripe event") from None
        data = _plain(event)
        if data.get("object") != "event" or not data.get("id") or not data.get("type"):
            raise BadSignature("the body is not a Stripe event")
        return data
    raise BadSignature("; ".join(sorted(set(reasons))))


def _timestamp(header: str) -> int:
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise BadSignature("malformed Stripe-Signature header")
