"""`talkturo campaigns …`: create, run and watch campaigns from the command line (the API's
/v1/campaigns routes, docs/campaigns.md)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_API_URL = "http://127.0.0.1:8000"
FINISHED = ("completed", "cancelled")


def _api_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--api-key",
        envvar="TALKTURO_API_KEY",
        required=True,
        help="An API key of the account [env: TALKTURO_API_KEY].",
    )(command)
    return click.option(
        "--api-url",
        envvar="TALKTURO_API_URL",
        default=DEFAULT_API_URL,
        show_default=True,
        help="Base URL of the API [env: TALKTURO_API_URL].",
    )(command)


def _request(api_url: str, api_key: str, method: str, path: str, **kwargs: Any) -> Any:
    from talkturo.cli import _call, _client

    with _client(api_url, api_key) as client:
        return _call(client, method, path, **kwargs)


@click.group(context_settings=CONTEXT)
def campaigns() -> None:
    """Create, run and watch outbound calling campaigns."""


def read_definition(path: Path) -> dict[str, Any]:
    """A campaign file: YAML or JSON in the shape of POST /v1/campaigns's body."""
    import yaml

    text = path.read_text()
    try:
        loaded = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise click.BadParameter(f"{path} is not valid YAML or JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise click.BadParameter(f"{path} must hold one campaign (a mapping of its fields)")
    return loaded


def _every(request: Callable[..., Any], path: str) -> list[dict[str, Any]]:
    """Every item of a list route, page after page."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = request("GET", path, params=params)
        found += page["data"]
        if not page.get("has_more"):
            return found
        params = {"limit": 100, "starting_after": page["next_cursor"]}


def resolve_references(body: dict[str, Any], request: Callable[..., Any]) -> dict[str, Any]:
    """The file's assistant may be named by its id or its name, its phone numbers by id or by
    number (E.164): names and numbers are looked up and replaced by ids."""
    from talkturo.cli import _fail

    resolved = dict(body)
    if "assistant" in resolved and "assistant_id" not in resolved:
        resolved["assistant_id"] = resolved.pop("assistant")
    assistant = resolved.get("assistant_id")
    if isinstance(assistant, str) and assistant and not assistant.startswith("asst_"):
        named = [a for a in _every(request, "/v1/assistants") if a.get("name") == assistant]
        if len(named) != 1:
            how = "no assistant is" if not named else f"{len(named)} assistants are"
            _fail(f"{how} named {assistant!r}; give its id (asst_…) instead")
        resolved["assistant_id"] = named[0]["id"]
    wanted = resolved.get("phone_number_ids")
    if isinstance(wanted, list) and any(isinstance(n, str) and n.startswith("+") for n in wanted):
        held = {n["phone_number"]: n["id"] for n in _every(request, "/v1/phone-numbers")}
        ids = []
        for number in wanted:
            if isinstance(number, str) and number.startswith("+"):
                if number not in held:
                    _fail(f"{number} is not one of the account's phone numbers")
                ids.append(held[number])
            else:
                ids.append(number)
        resolved["phone_number_ids"] = ids
    return resolved


@campaigns.command("create", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--assistant", "assistant_id", help="The assistant's id or name (overrides the file's)."
)
@click.option("--start", is_flag=True, help="Start it once its audience is gathered.")
@_api_options
def create_campaign(
    file: Path, assistant_id: str | None, start: bool, api_url: str, api_key: str
) -> None:
    """Create a campaign from FILE (YAML or JSON: name, assistant_id, audience, call_window,
    max_concurrent_calls, max_attempts, retry …; see examples/campaign.yaml). The assistant
    may be given by name, the phone_number_ids by number (+1…). Prints its id."""
    body = read_definition(file)
    if assistant_id:
        body.pop("assistant", None)
        body["assistant_id"] = assistant_id

    def request(method: str, path: str, **kwargs: Any) -> Any:
        return _request(api_url, api_key, method, path, **kwargs)

    body = resolve_references(body, request)
    made = _request(api_url, api_key, "POST", "/v1/campaigns", json=body)
    click.echo(made["id"])
    if not start:
        return
    pause = 0.1
    while made.get("audience_status") == "building":
        time.sleep(pause)
        pause = min(1.0, pause * 1.5)
        made = _request(api_url, api_key, "GET", f"/v1/campaigns/{made['id']}")
    started = _request(api_url, api_key, "POST", f"/v1/campaigns/{made['id']}/start")
    click.echo(f"{started['status']}: {started['audience_total']} contacts", err=True)


@campaigns.command("list", context_settings=CONTEXT)
@click.option("--status", default=None, help="Only campaigns in this status.")
@_api_options
def list_campaigns(status: str | None, api_url: str, api_key: str) -> None:
    """The account's campaigns, newest first."""
    params = {"limit": 100, **({"status": status} if status else {})}
    page = _request(api_url, api_key, "GET", "/v1/campaigns", params=params)
    rows = [
        (c["id"], c["status"], str(c["audience_total"]), _rate(c.get("completion_rate")), c["name"])
        for c in page["data"]
    ]
    click.echo(_table(("ID", "STATUS", "CONTACTS", "DONE", "NAME"), rows))


@campaigns.command("show", context_settings=CONTEXT)
@click.argument("campaign_id")
@_api_options
def show_campaign(campaign_id: str, api_url: str, api_key: str) -> None:
    """The campaign as JSON."""
    click.echo(
        json.dumps(_request(api_url, api_key, "GET", f"/v1/campaigns/{campaign_id}"), indent=2)
    )


def _lifecycle(verb: str, summary: str) -> None:
    @campaigns.command(verb, context_settings=CONTEXT, help=summary)
    @click.argument("campaign_id")
    @_api_options
    def command(campaign_id: str, api_url: str, api_key: str) -> None:
        answer = _request(api_url, api_key, "POST", f"/v1/campaigns/{campaign_id}/{verb}")
        reason = f" ({answer['status_reason']})" if answer.get("status_reason") else ""
        click.echo(f"{answer['id']}: {answer['status']}{reason}")


_lifecycle("start", "Start now (or at its scheduled_start_at).")
_lifecycle("pause", "Pause: no new dials; calls under way finish.")
_lifecycle("resume", "Resume a paused campaign.")
_lifecycle("cancel", "Cancel the campaign.")


@campaigns.command("watch", context_settings=CONTEXT)
@click.argument("campaign_id")
@click.option("--once", is_flag=True, help="Print one view and exit.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between views.")
@click.option("--timeout", default=None, type=float, help="Stop watching after this many seconds.")
@_api_options
def watch_campaign(
    campaign_id: str,
    once: bool,
    interval: float,
    timeout: float | None,
    api_url: str,
    api_key: str,
) -> None:
    """Live progress until the campaign completes or is cancelled, or until nothing can happen
    for a while (no call in flight, the next attempt over 15 minutes away: outside calling
    hours, say). Ctrl-C stops watching; the campaign goes on."""
    interactive = sys.stdout.isatty() and not once
    started = time.monotonic()
    try:
        while True:
            progress = _request(api_url, api_key, "GET", f"/v1/campaigns/{campaign_id}/progress")
            view = render_progress(progress)
            if interactive:
                click.echo("\x1b[H\x1b[2J" + view)  # clear the screen, then the view
            elif not once:
                click.echo(view + "\n")
            else:
                click.echo(view)
            if once or progress["status"] in FINISHED:
                return
            quiet_until = idle_until(progress)
            if quiet_until is not None:
                click.echo(f"Nothing to do until {quiet_until}; stopped watching (it goes on).")
                return
            if timeout is not None and time.monotonic() - started >= timeout:
                click.echo("Stopped watching (--timeout); the campaign goes on.")
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("\nStopped watching; the campaign goes on.", err=True)
        sys.exit(130)


@campaigns.command("contacts", context_settings=CONTEXT)
@click.argument("campaign_id")
@click.option(
    "--state",
    type=click.Choice(["pending", "queued", "calling", "completed", "exhausted", "skipped"]),
    default=None,
    help="Only contacts in this state.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100))
@_api_options
def campaign_contacts(
    campaign_id: str, state: str | None, limit: int, api_url: str, api_key: str
) -> None:
    """The campaign's contacts: state, attempts, next attempt, last outcome."""
    params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    page = _request(api_url, api_key, "GET", f"/v1/campaigns/{campaign_id}/contacts", params=params)
    click.echo(render_contacts(page["data"]))
    if page.get("has_more"):
        click.echo(f"… more: GET /v1/campaigns/{campaign_id}/contacts?starting_after=…")


# --------------------------------------------------------------------------- rendering

IDLE_AHEAD_SECONDS = 15 * 60


def idle_until(progress: dict[str, Any], now: datetime | None = None) -> str | None:
    """When a running campaign with no call in flight next has work, if over 15 minutes away
    (None: something happens sooner, or the campaign is not running)."""
    if progress["status"] != "running" or progress["in_flight"]:
        return None
    if progress["audience_status"] == "building":
        return None
    upcoming = [q["next_attempt_at"] for q in progress["queue"] if q.get("next_attempt_at")]
    if not upcoming:
        return None
    first = min(datetime.fromisoformat(u) for u in upcoming)
    if (first - (now or datetime.now(UTC))).total_seconds() <= IDLE_AHEAD_SECONDS:
        return None
    return first.strftime("%Y-%m-%d %H:%M UTC")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _when(value: str | None, now: datetime | None = None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if seconds <= 0:
        return "now"
    if seconds < 120:
        return f"in {seconds:.0f}s"
    if seconds < 7200:
        return f"in {seconds / 60:.0f} min"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def render_progress(progress: dict[str, Any], now: datetime | None = None) -> str:
    counts, outcomes, skipped = progress["counts"], progress["outcomes"], progress["skipped"]
    reason = f" ({progress['status_reason']})" if progress.get("status_reason") else ""
    building = (
        " (audience still being gathered)" if progress["audience_status"] == "building" else ""
    )
    lines = [
        f"Campaign {progress['campaign_id']}: {progress['status']}{reason}",
        f"Contacts {progress['audience_total']}{building}: "
        + ", ".join(f"{counts[s]} {s}" for s in counts),
        f"Calls in flight {progress['in_flight']} of {progress['max_concurrent_calls']}",
        "Outcomes: " + ", ".join(f"{outcomes[o]} {o.replace('_', ' ')}" for o in outcomes),
        f"Answer rate {_rate(progress.get('answer_rate'))} (voicemail excluded), "
        f"done {_rate(progress.get('completion_rate'))}",
    ]
    skips = [f"{n} {r.replace('_', ' ')}" for r, n in skipped.items() if n]
    if skips:
        lines.append("Skipped: " + ", ".join(skips))
    if progress["queue"]:
        lines += ["", "Next up:"]
        lines += [
            f"  {q.get('name') or q['contact_id']:<24} {q.get('phone') or '':<16} "
            f"attempt {q['attempt']}  {_when(q.get('next_attempt_at'), now)}"
            for q in progress["queue"]
        ]
    if progress["recent_calls"]:
        lines += ["", "Recent calls:"]
        lines += [
            f"  {c['call_id']}  attempt {c.get('attempt') or '-'}  "
            f"{c.get('outcome') or c['status']}"
            for c in progress["recent_calls"]
        ]
    return "\n".join(lines)


def render_contacts(rows: list[dict[str, Any]], now: datetime | None = None) -> str:
    table = [
        (
            c.get("name") or c["contact_id"],
            c.get("phone") or "-",
            c["state"] + (f" ({c['skip_reason']})" if c.get("skip_reason") else ""),
            str(c["attempts"]),
            _when(c.get("next_attempt_at"), now) if c["state"] == "pending" else "-",
            c.get("last_outcome") or "-",
        )
        for c in rows
    ]
    return _table(("CONTACT", "PHONE", "STATE", "ATTEMPTS", "NEXT", "LAST OUTCOME"), table)
