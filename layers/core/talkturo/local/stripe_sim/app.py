"""The Stripe simulator's HTTP side: the API subset the platform calls, the hosted payment page,
and a few controls of its own under /_sim (disputes, webhook switches).

The API speaks what the official SDK sends (form-encoded bodies, bracketed keys, the query
string on GET, `Authorization: Bearer sk_test_…`, `Idempotency-Key`) and answers Stripe's JSON
shapes, list envelopes and error bodies.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from talkturo.local.stripe_sim import page
from talkturo.local.stripe_sim.forms import decode, integer
from talkturo.local.stripe_sim.state import StripeApiError, StripeState, new_id, public
from talkturo.local.stripe_sim.webhooks import WebhookSender

Handler = Callable[[Request, dict[str, Any]], dict[str, Any]]


class StripeApp:
    def __init__(self, state: StripeState, sender: WebhookSender, secret_key: str) -> None:
        self.state = state
        self.sender = sender
        self.secret_key = secret_key
        api = [
            ("POST", "/v1/customers", self.create_customer, True),
            ("GET", "/v1/customers", self.list_("customer"), False),
            ("GET", "/v1/customers/{id}", self.get_("customer"), False),
            ("DELETE", "/v1/customers/{id}", self.delete_customer, False),
            ("POST", "/v1/checkout/sessions", self.create_session, True),
            ("GET", "/v1/checkout/sessions", self.list_("checkout.session"), False),
            ("GET", "/v1/checkout/sessions/{id}", self.get_("checkout.session"), False),
            ("POST", "/v1/payment_intents", self.create_intent, True),
            ("GET", "/v1/payment_intents", self.list_("payment_intent"), False),
            ("GET", "/v1/payment_intents/{id}", self.get_("payment_intent"), False),
            ("GET", "/v1/payment_methods", self.list_methods, False),
            ("GET", "/v1/customers/{id}/payment_methods", self.list_methods, False),
            ("GET", "/v1/payment_methods/{id}", self.get_("payment_method"), False),
            ("GET", "/v1/charges", self.list_("charge"), False),
            ("GET", "/v1/charges/{id}", self.get_("charge"), False),
            ("POST", "/v1/refunds", self.create_refund, True),
            ("GET", "/v1/refunds", self.list_refunds, False),
            ("GET", "/v1/refunds/{id}", self.get_("refund"), False),
            ("GET", "/v1/disputes", self.list_("dispute"), False),
            ("GET", "/v1/disputes/{id}", self.get_("dispute"), False),
            ("POST", "/v1/disputes/{id}/close", self.accept_dispute, True),
            ("GET", "/v1/events", self.list_("event"), False),
            ("GET", "/v1/events/{id}", self.get_("event"), False),
            ("POST", "/v1/webhook_endpoints", self.create_endpoint, True),
            # The simulator's own controls (not Stripe's API).
            ("POST", "/_sim/disputes", self.sim_dispute, False),
            ("POST", "/_sim/disputes/{id}/close", self.sim_close_dispute, False),
            ("POST", "/_sim/refunds/{id}/fail", self.sim_fail_refund, False),
            ("POST", "/_sim/switches", self.sim_switches, False),
        ]
        routes = [
            Route(path, self._api(handler, keyed), methods=[m]) for m, path, handler, keyed in api
        ]
        routes += [
            Route("/pay/{id}", self.show_page, methods=["GET"]),
            Route("/pay/{id}", self.submit_page, methods=["POST"]),
            Route("/pay/{id}/authenticate", self.submit_authentication, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)

    # ------------------------------------------------------------------------- plumbing
    def _api(self, handler: Handler, keyed: bool) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            request_id = new_id("req_", 14)
            if not self._authorised(request):
                return _error(
                    StripeApiError(
                        401,
                        "Invalid API Key provided.",
                        code="api_key_invalid",
                    ),
                    request_id,
                )
            body = (await request.body()).decode("utf-8", errors="replace")
            params = decode(request.url.query if request.method == "GET" else body)
            key = request.headers.get("idempotency-key") if keyed else None
            try:
                answer, replayed = await run_in_threadpool(
                    self.state.replay,
                    key,
                    {"path": request.url.path, "params": params},
                    lambda: handler(request, params),
                )
            except StripeApiError as error:
                return _error(error, request_id)
            headers = {"Request-Id": request_id, "Stripe-Version": _version(request)}
            if key:
                headers["Idempotency-Key"] = key
            if replayed:
                headers["Idempotent-Replayed"] = "true"
            return JSONResponse(answer, headers=headers)

        return endpoint

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.encode(), self.secret_key.encode()
        )

    def get_(self, kind: str) -> Handler:
        def handler(request: Request, params: dict[str, Any]) -> dict[str, Any]:
            with self.state.lock:
                return public(self.state.get(kind, request.path_params["id"]))

        return handler

    def list_(self, kind: str) -> Handler:
        def handler(request: Request, params: dict[str, Any]) -> dict[str, Any]:
            keep = _matching(params, ("customer", "payment_intent", "charge", "type"))
            return self.state.page(kind, params, request.url.path, keep)

        return handler

    # ------------------------------------------------------------------------- API
    def create_customer(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return public(self.state.create_customer(params))

    def create_session(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return public(self.state.create_checkout_session(params))

    def create_intent(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return public(self.state.create_payment_intent(params))

    def create_refund(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return public(self.state.create_refund(params))

    def list_refunds(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        keep = _matching(params, ("charge", "payment_intent"))
        return self.state.page("refund", params, request.url.path, keep)

    def delete_customer(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return self.state.delete_customer(request.path_params["id"])

    def list_methods(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        customer = request.path_params.get("id") or params.get("customer")
        wanted_type = params.get("type")
        if customer is not None:
            with self.state.lock:
                self.state.get("customer", customer, "customer")  # Stripe: resource_missing

        def keep(method: dict[str, Any]) -> bool:
            return (
                method.get("customer") is not None
                and (customer is None or method.get("customer") == customer)
                and (wanted_type is None or method.get("type") == wanted_type)
            )

        return self.state.page("payment_method", params, request.url.path, keep)

    def accept_dispute(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's "close" is accepting the dispute: the merchant loses it."""
        return public(self.state.close_dispute(request.path_params["id"], "lost"))

    def create_endpoint(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("url"):
            raise StripeApiError(400, "Missing required param: url.", param="url")
        endpoint = {
            "id": new_id("we_"),
            "object": "webhook_endpoint",
            "url": params["url"],
            "enabled_events": list(params.get("enabled_events") or ["*"]),
            "secret": "whsec_" + new_id("", 32),
            "status": "enabled",
            "api_version": params.get("api_version"),
            "created": 0,
            "livemode": False,
        }
        with self.state.lock:
            self.state.put(endpoint)
            self.sender.endpoints[endpoint["id"]] = endpoint
        return dict(endpoint)

    # ------------------------------------------------------------------------- controls
    def sim_dispute(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        charge = params.get("charge")
        if not charge and params.get("payment_intent"):
            with self.state.lock:
                intent = self.state.get(
                    "payment_intent", params["payment_intent"], "payment_intent"
                )
            charge = intent.get("latest_charge")
        if not charge:
            raise StripeApiError(400, "Name a charge or a payment_intent.", param="charge")
        amount = integer(params["amount"], "amount") if params.get("amount") else None
        reason = str(params.get("reason") or "fraudulent")
        return public(self.state.create_dispute(str(charge), amount, reason))

    def sim_close_dispute(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        outcome = str(params.get("outcome") or "")
        if outcome not in ("won", "lost"):
            raise StripeApiError(400, "outcome must be won or lost.", param="outcome")
        return public(self.state.close_dispute(request.path_params["id"], outcome))

    def sim_fail_refund(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        reason = str(params.get("failure_reason") or "expired_or_canceled_card")
        return public(self.state.fail_refund(request.path_params["id"], reason))

    def sim_switches(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        try:
            self.sender.switches.update(**params)
        except (TypeError, ValueError) as error:
            raise StripeApiError(400, str(error)) from None
        return {"object": "switches", **vars(self.sender.switches)}

    # ------------------------------------------------------------------------- hosted page
    async def show_page(self, request: Request) -> Response:
        with self.state.lock:
            session = self.state.objects["checkout.session"].get(request.path_params["id"])
            if session is None:
                return HTMLResponse("<h1>No such checkout</h1>", status_code=404)
            if session.get("_pending_intent"):
                intent = self.state.objects["payment_intent"].get(session["_pending_intent"], {})
                if intent.get("status") == "requires_action":
                    return HTMLResponse(page.authenticate_page(session))
            return HTMLResponse(page.checkout_page(session))

    async def submit_page(self, request: Request) -> Response:
        session_id = request.path_params["id"]
        form = decode((await request.body()).decode("utf-8", errors="replace"))
        try:
            outcome = await run_in_threadpool(
                self.state.pay_session, session_id, str(form.get("card") or "")
            )
        except StripeApiError:
            return HTMLResponse("<h1>No such checkout</h1>", status_code=404)
        return self._after_payment(session_id, outcome)

    async def submit_authentication(self, request: Request) -> Response:
        session_id = request.path_params["id"]
        form = decode((await request.body()).decode("utf-8", errors="replace"))
        try:
            outcome = await run_in_threadpool(
                self.state.authenticate_session, session_id, form.get("result") == "complete"
            )
        except StripeApiError:
            return HTMLResponse("<h1>No such checkout</h1>", status_code=404)
        return self._after_payment(session_id, outcome)

    def _after_payment(self, session_id: str, outcome: dict[str, Any]) -> Response:
        if outcome["result"] == "paid":
            return RedirectResponse(outcome["redirect"], status_code=303)
        if outcome["result"] == "processing":
            return HTMLResponse(page.processing_page(outcome["redirect"]))
        with self.state.lock:
            session = self.state.get("checkout.session", session_id)
            if outcome["result"] == "authenticate":
                return HTMLResponse(page.authenticate_page(session))
            return HTMLResponse(page.checkout_page(session, error=outcome.get("message")), 402)


def _matching(params: dict[str, Any], names: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    wanted = {name: params[name] for name in names if params.get(name)}
    return lambda obj: all(obj.get(name) == value for name, value in wanted.items())


def _version(request: Request) -> str:
    from talkturo.local.stripe_sim.state import API_VERSION

    return request.headers.get("stripe-version") or API_VERSION


def _error(error: StripeApiError, request_id: str) -> Response:
    body = dict(error.body)
    body.setdefault("request_log_url", f"https://dashboard.stripe.com/test/logs/{request_id}")
    return Response(
        json.dumps({"error": body}),
        status_code=error.status,
        media_type="application/json",
        headers={"Request-Id": request_id},
    )
