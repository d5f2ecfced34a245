"""The hosted payment page: what a buyer sees at a Checkout Session's `url`.

Plain HTML forms (no script), so a person can click through it in a browser and a command can
post the same form (`talkturo billing buy`).
"""

from __future__ import annotations

import html
from typing import Any

from talkturo.local.stripe_sim.state import DELAYED, TEST_CARDS


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _layout(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 30rem; margin: 3rem auto; color: #1a1f36; }}
.box {{ border: 1px solid #e3e8ee; border-radius: 8px; padding: 1.5rem; }}
label {{ display: block; padding: .4rem 0; }}
button {{ background: #635bff; color: white; border: 0; border-radius: 6px; padding: .6rem 1.2rem;
  font-size: 1rem; margin-top: 1rem; cursor: pointer; }}
.error {{ color: #df1b41; }} .note {{ color: #697386; font-size: .9rem; }}
</style></head><body><div class="box">{body}</div>
<p class="note">Stripe simulator (test mode): no real card is charged.</p></body></html>"""


def checkout_page(session: dict[str, Any], error: str | None = None) -> str:
    description = html.escape(
        (session.get("_payment_intent_data") or {}).get("description") or "Credits"
    )
    if session["status"] != "open":
        return _layout(
            "Paid",
            f"<h1>{description}</h1><p>This checkout is complete.</p>"
            f'<p><a href="{html.escape(session["success_url"])}">Continue</a></p>',
        )
    cards = "".join(
        f'<label><input type="radio" name="card" value="{card.number}"'
        f"{' checked' if index == 0 else ''}> {card.number} · {html.escape(card.label)}</label>"
        for index, card in enumerate(TEST_CARDS.values())
    )
    cards += (
        f'<label><input type="radio" name="card" value="{DELAYED}"> Bank debit · succeeds a '
        "moment later</label>"
    )
    saving = (
        '<p class="note">Your card will be saved for later payments.</p>'
        if (session.get("_payment_intent_data") or {}).get("setup_future_usage")
        else ""
    )
    problem = f'<p class="error">{html.escape(error)}</p>' if error else ""
    cancel = (
        f' <a href="{html.escape(session["cancel_url"])}">Cancel</a>'
        if session.get("cancel_url")
        else ""
    )
    return _layout(
        "Pay",
        f"<h1>{description}</h1><p><strong>{_money(session['amount_total'])}</strong></p>"
        f'{problem}<form method="post" action="/pay/{session["id"]}">{cards}{saving}'
        f'<button type="submit">Pay {_money(session["amount_total"])}</button>{cancel}</form>',
    )


def authenticate_page(session: dict[str, Any]) -> str:
    return _layout(
        "Authenticate",
        "<h1>Authenticate this payment</h1><p>Your bank asks you to confirm it (3D Secure).</p>"
        f'<form method="post" action="/pay/{session["id"]}/authenticate">'
        '<button name="result" value="complete">Complete authentication</button> '
        '<button name="result" value="fail">Fail authentication</button></form>',
    )


def processing_page(redirect: str) -> str:
    return _layout(
        "Processing",
        "<h1>Payment processing</h1><p>The bank debit is on its way.</p>"
        f'<p><a href="{html.escape(redirect)}">Continue</a></p>',
    )
