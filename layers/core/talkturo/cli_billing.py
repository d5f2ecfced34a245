"""`talkturo billing`: buy credits, auto-reload, and reconcile Stripe with the ledger.

`buy` starts a Checkout through the API and prints its payment page; on the local platform it
can also click through the Stripe simulator's page for you (`--pay`: it posts the page's own
form with a test card, as a browser would), then waits for the credits to arrive through the
webhook and shows them. `auto-reload` shows and changes the auto-reload settings (GET and PATCH
/v1/credits/auto-reload). `reconcile` (an operator command) lists Stripe's payments, refunds and
disputes against the ledger and exits 1 when anything differs.
"""

from __future__ import annotations

import re
import time
from typing import Any

import click

from talkturo.cli_campaigns import CONTEXT, DEFAULT_API_URL, _api_options, _request

SUCCEEDS = "4242424242424242"
_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@click.group(context_settings=CONTEXT)
def billing() -> None:
    """Buy credits and check payments against the ledger."""


@billing.command("buy", context_settings=CONTEXT)
@click.argument("package", default="pkg_10")
@click.option("--amount-cents", type=int, help="A custom amount (with PACKAGE custom).")
@click.option("--save-card", is_flag=True, help="Save the card for auto-reload.")
@click.option(
    "--pay",
    "card",
    is_flag=False,
    flag_value=SUCCEEDS,
    default=None,
    help="Local platform only: pay on the simulator's page with this test card "
    f"(default {SUCCEEDS}, which succeeds), then wait for the credits.",
)
@click.option("--wait", default=30.0, show_default=True, help="Seconds to wait for the credits.")
@_api_options
def buy(
    package: str,
    amount_cents: int | None,
    save_card: bool,
    card: str | None,
    wait: float,
    api_url: str,
    api_key: str,
) -> None:
    """Start buying PACKAGE (see GET /v1/credits/packages; `custom` with --amount-cents)."""
    body: dict[str, Any] = {"package": package, "save_card": save_card}
    if amount_cents is not None:
        body["amount_cents"] = amount_cents
    session = _request(api_url, api_key, "POST", "/v1/credits/checkout", json=body)
    click.echo(
        f"Checkout {session['id']}: {session['credits']} credits for "
        f"${session['amount_cents'] / 100:,.2f}"
    )
    click.echo(f"Pay here: {session['url']}")
    if card is None:
        return
    before = {p["id"] for p in _payments(api_url, api_key)}
    _click_through(session["url"], card)
    deadline = time.monotonic() + wait
    while True:
        new = [p for p in _payments(api_url, api_key) if p["id"] not in before]
        if new:
            break
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"no credits after {wait:g} s: is the billing worker running (talkturo dev)?"
            )
        time.sleep(0.25)
    payment = new[0]
    entries = _request(api_url, api_key, "GET", "/v1/credits/ledger", params={"limit": 100})["data"]
    for entry in entries:
        if entry["reference"] == payment["id"]:
            click.echo(f"  ledger  {entry['kind']:<9} {entry['amount']:>12}  {entry['id']}")
    balance = _request(api_url, api_key, "GET", "/v1/credits")["balance"]
    click.echo(f"Balance: {balance} credits")


def _payments(api_url: str, api_key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _request(
        api_url, api_key, "GET", "/v1/credits/payments", params={"limit": 100}
    )["data"]
    return found


def _click_through(url: str, card: str) -> None:
    """What a person does on the simulator's page: read it, pick the card, press Pay (and
    complete the authentication it may ask for)."""
    import httpx

    with httpx.Client(timeout=15, follow_redirects=False) as client:
        page = client.get(url)
        found = _FORM_ACTION.search(page.text)
        if page.status_code != 200 or found is None:
            raise click.ClickException(
                "this is not the local Stripe simulator's page; open it in a browser to pay"
            )
        action = httpx.URL(url).join(found.group(1))
        answer = client.post(action, data={"card": card})
        if "/authenticate" in answer.text:
            answer = client.post(str(action) + "/authenticate", data={"result": "complete"})
        if answer.status_code == 402:
            raise click.ClickException(f"the test card {card} was declined")
        if answer.status_code not in (200, 303):
            raise click.ClickException(f"the payment page answered {answer.status_code}")
    click.echo(f"Paid with test card {card}; waiting for Stripe's webhook…")


AUTO_RELOAD = "/v1/credits/auto-reload"


@billing.group("auto-reload", context_settings=CONTEXT)
def auto_reload() -> None:
    """Show auto-reload, or turn it on or off."""


@auto_reload.command("show", context_settings=CONTEXT)
@_api_options
def show_auto_reload(api_url: str, api_key: str) -> None:
    """The settings, the state and the reload under way or the last refusal."""
    click.echo(render_auto_reload(_request(api_url, api_key, "GET", AUTO_RELOAD)))


@auto_reload.command("on", context_settings=CONTEXT)
@click.option("--threshold", help="Credits: usage that takes the balance below this reloads.")
@click.option("--package", help="What a reload buys: a package id (pkg_10, pkg_50, …).")
@click.option(
    "--monthly-cap",
    help="Most credits reloads may buy in a calendar month (UTC); `none`: no cap.",
)
@_api_options
def auto_reload_on(
    threshold: str | None,
    package: str | None,
    monthly_cap: str | None,
    api_url: str,
    api_key: str,
) -> None:
    """Turn auto-reload on (or arm again a failed, waiting or capped one); the settings not
    given stay as they were."""
    changes: dict[str, Any] = {"enabled": True}
    if threshold is not None:
        changes["threshold"] = threshold
    if package is not None:
        changes["package"] = package
    if monthly_cap is not None:  # numbers stay text: the API checks them and names the field
        changes["monthly_cap"] = None if monthly_cap.lower() == "none" else monthly_cap
    answer = _request(api_url, api_key, "PATCH", AUTO_RELOAD, json=changes)
    click.echo(render_auto_reload(answer))


@auto_reload.command("off", context_settings=CONTEXT)
@_api_options
def auto_reload_off(api_url: str, api_key: str) -> None:
    """Turn auto-reload off (the settings are kept for next time)."""
    answer = _request(api_url, api_key, "PATCH", AUTO_RELOAD, json={"enabled": False})
    click.echo(render_auto_reload(answer))


def render_auto_reload(settings: dict[str, Any]) -> str:
    """GET /v1/credits/auto-reload's answer, in a few lines."""
    lines = [
        f"Auto-reload {'on' if settings['enabled'] else 'off'}: {settings['state']} "
        f"({settings['state_message']})"
    ]
    if settings.get("charging_now"):
        lines.append("Charging now: the balance is already below the threshold.")
    if settings["package"] is not None:
        price = settings["package_amount_cents"] or 0
        lines.append(
            f"  package      {settings['package']}: {settings['package_credits']} credits "
            f"for ${price / 100:,.2f}"
        )
    if settings["threshold"] is not None:
        lines.append(f"  threshold    {settings['threshold']} credits")
    cap = settings["monthly_cap"]
    lines.append(
        f"  monthly cap  {cap + ' credits' if cap is not None else 'none'}; "
        f"{settings['reloaded_this_month']} reloaded in {settings['month'] or 'this month'}"
    )
    lines.append(f"  reloads      {settings['reloads']}")
    pending = settings["pending"]
    if pending is not None:
        paid = f", payment {pending['payment_id']}" if pending["payment_id"] else ""
        lines.append(
            f"  pending      reload {pending['sequence']} since {pending['since']}: "
            f"{pending['credits']} credits{paid}"
        )
    failure = settings["last_failure"]
    if failure is not None:
        decline = f" ({failure['decline_code']})" if failure["decline_code"] else ""
        lines.append(
            f"  last failure reload {failure['sequence']} at {failure['at']}: "
            f"{failure['code']}{decline}: {failure['message']}"
        )
    return "\n".join(lines)


@billing.command("reconcile", context_settings=CONTEXT)
@click.option("--since-days", default=7, show_default=True, type=click.IntRange(1, 90))
@click.option(
    "--admin-secret",
    envvar="TALKTURO_ADMIN_SECRET",
    required=True,
    help="The deployment's admin secret [env: TALKTURO_ADMIN_SECRET].",
)
@click.option(
    "--api-url",
    envvar="TALKTURO_API_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    help="Base URL of the API [env: TALKTURO_API_URL].",
)
def reconcile(since_days: int, admin_secret: str, api_url: str) -> None:
    """Stripe's payments, refunds and disputes against the ledger; exit 1 on any difference."""
    report = _request(
        api_url,
        admin_secret,
        "GET",
        "/v1/admin/billing/reconciliation",
        params={"since_days": since_days},
    )
    click.echo(
        f"Since {report['since']}: {report['payments']} payments, {report['refunds']} refunds, "
        f"{report['disputes']} disputes ({report['not_ours']} Stripe payments not ours)"
    )
    for difference in report["differences"]:
        click.echo(
            f"  {difference['kind']:<16} {difference['stripe_id']}  "
            f"{difference['account_id'] or '-'}  {difference['detail']}"
        )
    if report["differences"]:
        count = len(report["differences"])
        click.echo(
            f"{count} difference{'s' if count > 1 else ''}: each kind is explained in "
            "docs/billing.md (Reconciliation)."
        )
        raise SystemExit(1)
    click.echo("No differences: every payment, refund and dispute is in the ledger once.")
