"""The `talkturo` command: run the platform locally and drive its API from a terminal."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

DEFAULT_API_URL = "http://127.0.0.1:8000"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="talkturo", prog_name="talkturo")
def main() -> None:
    """Talkturo: AI voice agents for the phone network.

    Start with `talkturo dev`, which runs the whole platform on this machine (no AWS account,
    no provider keys) and prints an API key to use with the other commands.

    The commands that call the API read TALKTURO_API_URL (default http://127.0.0.1:8000) and
    TALKTURO_API_KEY from the environment when the options are not given.
    """


# ---------------------------------------------------------------------------------- dev
@main.command(context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API binds to.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port of the API.")
@click.option(
    "--aws-port",
    default=4566,
    show_default=True,
    type=int,
    help="Port of the AWS emulator (DynamoDB, SQS, S3).",
)
@click.option(
    "--carrier-port",
    default=8020,
    show_default=True,
    type=int,
    help="Port of the carrier simulator (a local phone network speaking Twilio's API).",
)
@click.option(
    "--stripe-port",
    default=8025,
    show_default=True,
    type=int,
    help="Port of the Stripe simulator (API subset, hosted payment page, signed webhooks).",
)
@click.option(
    "--voice-port",
    default=8030,
    show_default=True,
    type=int,
    help="Port of the voice service (the live call loop; the carrier's media streams).",
)
@click.option(
    "--data-dir",
    envvar="TALKTURO_DATA_DIR",
    default=".talkturo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder the data is kept in between runs [env: TALKTURO_DATA_DIR].",
)
@click.option("--fresh", is_flag=True, help="Delete the saved data first: start empty.")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log what each component does, and every request to the carrier with its headers.",
)
def dev(
    host: str,
    port: int,
    aws_port: int,
    carrier_port: int,
    stripe_port: int,
    voice_port: int,
    data_dir: Path,
    fresh: bool,
    verbose: bool,
) -> None:
    """Run the whole platform locally, in the foreground, until Ctrl-C.

    Starts an AWS emulator on loopback, creates the resources of template.yaml in it, serves
    the API (interactive docs at /docs), feeds queued messages to the worker functions, runs
    the carrier simulator (a local phone network the Twilio adapter is pointed at), the
    Stripe simulator (a hosted payment page with test cards, signed webhooks) and the
    voice service (offline speech recognition and voice, and a scripted development model
    for every provider without a key), and creates a ready account "Local developer" with an
    API key.

    \b
    Environment:
      TALKTURO_DEV_API_KEY   use this value as the dev account's key (starts with "tk_",
                             at least 24 characters) instead of the generated one
      TALKTURO_ADMIN_SECRET  the admin API's secret (generated per run and printed when
                             unset)
      TALKTURO_DATA_DIR      the data folder (as --data-dir)
      OPENAI_API_KEY, DEEPGRAM_API_KEY, …   a provider's key switches calls using that
                             provider to the real service (docs/voice.md)
      LOCAL_LLM_BASE_URL     an OpenAI-compatible server (a local model) for every call's
                             language model; LOCAL_LLM_MODEL names its model

    The data (tables, files, queued messages, the carrier simulator's credentials and
    numbers, the dev account and its generated key) is kept in the data folder: saved every
    5 s when something changed and on Ctrl-C, and restored at the next start. --fresh starts
    empty. See docs/local-platform.md.
    """
    from talkturo.local.console import console_logging
    from talkturo.local.platform import LocalPlatform, Options, PlatformError, serve

    console_logging(verbose)
    try:
        options = Options.from_environment(
            host=host,
            port=port,
            aws_port=aws_port,
            carrier_port=carrier_port,
            stripe_port=stripe_port,
            voice_port=voice_port,
            data_dir=str(data_dir),
            fresh=fresh,
        )
        platform = LocalPlatform(options)
        code = serve(platform, on_ready=lambda banner: click.echo(banner))
    except PlatformError as exc:
        _fail(str(exc))
    # Everything is stopped and the data saved. Tearing the interpreter down object by object
    # (a full collection over moto's backends and every module) would take seconds more.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---------------------------------------------------------------------------------- accounts
def _admin_options(command: Any) -> Any:
    """--api-url and --admin-secret, for the operator commands."""
    command = click.option(
        "--admin-secret",
        envvar="TALKTURO_ADMIN_SECRET",
        required=True,
        help="The deployment's admin secret [env: TALKTURO_ADMIN_SECRET]. Locally, `talkturo "
        "dev` prints it; on AWS it is in Secrets Manager (stack output AdminSecretArn).",
    )(command)
    return click.option(
        "--api-url",
        envvar="TALKTURO_API_URL",
        default=DEFAULT_API_URL,
        show_default=True,
        help="Base URL of the API [env: TALKTURO_API_URL].",
    )(command)


@main.group(context_settings=CONTEXT)
def accounts() -> None:
    """Manage accounts (operator commands, with the admin secret)."""


@accounts.command("create", context_settings=CONTEXT)
@click.option("--name", required=True, help="The account's name (a company, a team…).")
@click.option("--email", default=None, help="Contact email of the account.")
@_admin_options
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
def create_account(
    name: str, email: str | None, api_url: str, admin_secret: str, as_json: bool
) -> None:
    """Create an account and its first API key (shown once: store it)."""
    body: dict[str, Any] = {"name": name}
    if email:
        body["email"] = email
    with _client(api_url, admin_secret) as client:
        answer = _call(client, "POST", "/v1/admin/accounts", json=body)
    if as_json:
        click.echo(_json(answer))
        return
    account, key = answer["account"], answer["api_key"]
    click.echo(f"Created account {account['id']} ({account['name']}).")
    click.echo(f"API key: {key['secret']}")
    click.echo("The key is shown this once; store it now (e.g. export TALKTURO_API_KEY=…).")


# ---------------------------------------------------------------------------------- dead letters
DEAD_LETTER_QUEUES = (
    "contact_import",
    "number_provisioning",
    "dial",
    "post_call",
    "campaign",
    "event",
    "billing",
    "test_run",
    "unknown",
)


@main.command("dead-letters", context_settings=CONTEXT)
@click.option(
    "--queue",
    type=click.Choice(DEAD_LETTER_QUEUES),
    default=None,
    help="Only the dead letters of this queue.",
)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 500),
    help="How many to list, newest first.",
)
@_admin_options
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def dead_letters(
    queue: str | None, limit: int, api_url: str, admin_secret: str, as_json: bool
) -> None:
    """List recent dead letters: queued jobs that failed every delivery, and what became of them.

    Each line shows when the worker took it, the queue, the job (an import, number or call id),
    what was done (ended: the job was ended here; already_ended; recorded) and the reason.
    Records are kept 14 days.
    """
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"queue": queue} if queue else {}
    with _client(api_url, admin_secret) as client:
        while len(found) < limit:
            page = _call(
                client,
                "GET",
                "/v1/admin/dead-letters",
                params={**params, "limit": min(100, limit - len(found))},
            )
            found.extend(page.get("data", []))
            if not page.get("has_more") or not page.get("next_cursor"):
                break
            params["starting_after"] = page["next_cursor"]
    if as_json:
        click.echo(_json(found))
        return
    if not found:
        click.echo("No dead letters" + (f" on {queue}." if queue else "."))
        return
    for letter in found:
        click.echo(
            f"{letter['dead_at'][:19]}  {letter['queue']:<19}  {letter.get('job') or '-':<32}  "
            f"{letter['action']:<13}  {letter['reason']}"
        )


# ---------------------------------------------------------------------------------- contacts
@main.group(context_settings=CONTEXT)
def contacts() -> None:
    """Work with the CRM's contacts."""


@contacts.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--api-url",
    envvar="TALKTURO_API_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    help="Base URL of the API [env: TALKTURO_API_URL].",
)
@click.option(
    "--api-key",
    envvar="TALKTURO_API_KEY",
    required=True,
    help="An API key of the account [env: TALKTURO_API_KEY].",
)
@click.option(
    "--show-errors",
    default=10,
    show_default=True,
    type=click.IntRange(0, 100),
    help="How many rejected rows to print.",
)
def import_contacts(file: Path, api_url: str, api_key: str, show_errors: int) -> None:
    """Import contacts from a CSV file and wait until the import is done.

    The first line names the columns (first_name, last_name, email, phone, company, tags, …;
    see the API docs). Companies are matched by name, or created. A bad row never stops the
    good ones: the rows that were rejected are listed at the end with the reason.

    Exits 0 when the import completed (even if some rows were rejected), 1 when it failed.
    """
    data = file.read_bytes()
    with _client(api_url, api_key) as client:
        job = _call(
            client,
            "POST",
            "/v1/contact-imports",
            content=data,
            headers={"Content-Type": "text/csv"},
        )
        click.echo(f"Import {job['id']} started for {file.name}.")
        try:
            job = _wait_for(client, job)
        except KeyboardInterrupt:
            click.echo(
                f"\nStopped waiting; the import goes on. Follow it with "
                f"GET /v1/contact-imports/{job['id']}.",
                err=True,
            )
            sys.exit(130)
        click.echo(
            f"Import {job['status']}: {job.get('processed_rows', 0)} of "
            f"{job.get('total_rows', 0)} rows: {job.get('created', 0)} created, "
            f"{job.get('updated', 0)} updated, {job.get('failed', 0)} rejected."
        )
        unknown = job.get("unknown_columns") or []
        if unknown:
            click.echo(f"Ignored unknown columns: {', '.join(unknown)}")
        if job.get("failed") and show_errors:
            _print_row_errors(client, job["id"], show_errors)
    if job["status"] != "completed":
        sys.exit(1)


def _wait_for(client: Any, job: dict[str, Any]) -> dict[str, Any]:
    interactive = sys.stdout.isatty()
    last = ""
    pause = 0.1
    while job.get("status") not in ("completed", "failed"):
        time.sleep(pause)
        pause = min(1.0, pause * 1.5)  # small imports finish fast; big ones need no hurry
        job = _call(client, "GET", f"/v1/contact-imports/{job['id']}")
        progress = (
            f"  {job.get('status')}: {job.get('processed_rows', 0)}/{job.get('total_rows', 0)} rows"
        )
        if interactive:
            click.echo(f"\r{progress}", nl=False)
        elif progress != last:
            click.echo(progress)
        last = progress
    if interactive and last:
        click.echo()
    return job


def _print_row_errors(client: Any, job_id: str, limit: int) -> None:
    page = _call(client, "GET", f"/v1/contact-imports/{job_id}/errors", params={"limit": limit})
    click.echo("Rejected rows:")
    for entry in page.get("data", [])[:limit]:
        reasons = "; ".join(
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in entry.get("errors", [])
        )
        click.echo(f"  row {entry.get('row')}: {reasons}")
    if page.get("has_more"):
        click.echo(f"  … more: GET /v1/contact-imports/{job_id}/errors")


# ---------------------------------------------------------------------------------- call
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8020"


def _simulator_options(command: Any) -> Any:
    command = click.option(
        "--auth-token",
        envvar="TWILIO_AUTH_TOKEN",
        required=True,
        help="The simulator's auth token (printed by `talkturo dev`) [env: TWILIO_AUTH_TOKEN].",
    )(command)
    command = click.option(
        "--account-sid",
        envvar="TWILIO_ACCOUNT_SID",
        required=True,
        help="The simulator's account SID (printed by `talkturo dev`) [env: TWILIO_ACCOUNT_SID].",
    )(command)
    return click.option(
        "--simulator-url",
        envvar="TALKTURO_SIMULATOR_URL",
        default=DEFAULT_SIMULATOR_URL,
        show_default=True,
        help="Base URL of the carrier simulator [env: TALKTURO_SIMULATOR_URL].",
    )(command)


@main.group(context_settings=CONTEXT)
def call() -> None:
    """Place simulated calls on the carrier simulator's phone network (see docs/carrier.md)."""


@call.command("dial", context_settings=CONTEXT)
@click.option("--to", "to", required=True, help="The platform's number to call (E.164).")
@click.option("--from", "from_", default=None, help="The caller's number (E.164).")
@click.option(
    "--script",
    "script_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The caller's script (YAML or JSON; default: says hello, listens, hangs up).",
)
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to follow the call.")
@_simulator_options
def call_dial(
    to: str,
    from_: str | None,
    script_file: Path | None,
    timeout: float,
    simulator_url: str,
    account_sid: str,
    auth_token: str,
) -> None:
    """A simulated caller dials a number; prints the call's progress and what it heard."""
    from talkturo.simcaller.scripts import ScriptError, read_script

    body: dict[str, Any] = {"to": to}
    if from_:
        body["from"] = from_
    if script_file is not None:
        try:
            body["script"] = read_script(script_file).as_dict()
        except ScriptError as exc:
            _fail(f"{script_file}: {exc}")
    with _simulator_client(simulator_url, account_sid, auth_token) as client:
        started = _sim_call(client, "POST", "/_sim/calls", json=body)
        sid = started["sid"]
        click.echo(f"Calling {to} from {started['from']}: {sid}")
        shown = {"events": 0, "heard": 0, "said": 0}
        deadline = time.monotonic() + timeout
        report = started
        while True:
            report = _sim_call(client, "GET", f"/_sim/calls/{sid}", params={"wait": 0.5})
            _print_progress(report, shown)
            if report.get("done"):
                break
            if time.monotonic() > deadline:
                _fail(f"the call is still going after {timeout:g} s; stopped following it")
            if not report.get("done"):
                time.sleep(0.5)
    party = report.get("party", {})
    click.echo(
        f"Call {report['status']}, {report.get('duration') or 0} s; the caller heard "
        f"{party.get('heard_audio_seconds', 0)} s of streamed audio."
    )
    if report.get("error_code"):
        click.echo(f"Error {report['error_code']}: {report.get('error_message')}")
        sys.exit(1)


def _print_progress(report: dict[str, Any], shown: dict[str, int]) -> None:
    events = report.get("events", [])
    for event in events[shown["events"] :]:
        params = event.get("params", {})
        status = f" CallStatus={params['CallStatus']}" if "CallStatus" in params else ""
        click.echo(
            f"  → {event['kind']} {event['url']}{status} (answered {event.get('response_status')})"
        )
    shown["events"] = len(events)
    party = report.get("party", {})
    heard = party.get("heard", [])
    for entry in heard[shown["heard"] :]:
        kind = entry.get("kind")
        if kind == "say":
            click.echo(f'  heard: "{entry["text"]}"')
        elif kind == "stream":
            click.echo(f"  media stream ended: {entry['outcome']}")
        else:
            detail = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "kind")
            click.echo(f"  {kind}{': ' + detail if detail else ''}")
    shown["heard"] = len(heard)
    said = party.get("said", [])
    for line in said[shown["said"] :]:
        how = " (interrupting)" if line.get("interrupt") else ""
        click.echo(f'  said{how}: "{line["text"]}" [{line.get("engine")}]')
    shown["said"] = len(said)


@call.command("callee", context_settings=CONTEXT)
@click.argument("numbers", metavar="NUMBER...", nargs=-1, required=True)
@click.option(
    "--behaviour",
    type=click.Choice(["human", "no_answer", "busy", "failed", "voicemail"]),
    default=None,
    help="How the number answers when the platform calls it (default: human, or the script's).",
)
@click.option(
    "--script",
    "script_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The callee's script (YAML or JSON: behaviour, greeting, steps).",
)
@click.option("--ring-seconds", type=float, default=None, help="How long it rings first.")
@click.option("--talk-seconds", type=float, default=None, help="How long it stays on the line.")
@click.option(
    "--amd-seconds",
    type=float,
    default=None,
    help="How long answering-machine detection takes to decide after the answer (default 1.5).",
)
@click.option("--reset", is_flag=True, help="Forget the number's behaviour (back to human).")
@_simulator_options
def call_callee(
    numbers: tuple[str, ...],
    behaviour: str | None,
    script_file: Path | None,
    ring_seconds: float | None,
    talk_seconds: float | None,
    amd_seconds: float | None,
    reset: bool,
    simulator_url: str,
    account_sid: str,
    auth_token: str,
) -> None:
    """Set how simulated numbers behave when the platform calls them (each NUMBER alike)."""
    from talkturo.simcaller.scripts import ScriptError, read_script

    body: dict[str, Any] = {}
    if not reset:
        if behaviour:
            body["behaviour"] = behaviour
        if script_file is not None:
            try:
                body["script"] = read_script(script_file).as_dict()
            except ScriptError as exc:
                _fail(f"{script_file}: {exc}")
        if ring_seconds is not None:
            body["ring_seconds"] = ring_seconds
        if talk_seconds is not None:
            body["talk_seconds"] = talk_seconds
        if amd_seconds is not None:
            body["amd_seconds"] = amd_seconds
    with _simulator_client(simulator_url, account_sid, auth_token) as client:
        for number in numbers:
            if reset:
                _sim_call(client, "DELETE", f"/_sim/callees/{number}")
                click.echo(f"{number} answers as a human again.")
                continue
            answer = _sim_call(client, "PUT", f"/_sim/callees/{number}", json=body)
            click.echo(
                f"{number}: {answer['behaviour']} (rings {answer['ring_seconds']:g} s, "
                f"stays {answer['talk_seconds']:g} s)"
            )


def _simulator_client(url: str, account_sid: str, auth_token: str) -> Any:
    import httpx

    return httpx.Client(
        base_url=url.rstrip("/"),
        auth=(account_sid, auth_token),
        headers={"User-Agent": "talkturo-cli"},
        timeout=30,
    )


def _sim_call(client: Any, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the carrier simulator; on an error, print it readably and exit 1."""
    return _call(
        client, method, path, service="the carrier simulator", option="--simulator-url", **kwargs
    )


# ---------------------------------------------------------------------------------- HTTP
def _client(api_url: str, token: str) -> Any:
    import httpx

    return httpx.Client(
        base_url=api_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}", "User-Agent": "talkturo-cli"},
        timeout=30,
    )


def _call(
    client: Any,
    method: str,
    path: str,
    *,
    service: str = "the API",
    option: str = "--api-url",
    **kwargs: Any,
) -> Any:
    """One request; on an error, print it readably and exit non-zero."""
    import httpx

    try:
        answer = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        _fail(
            f"cannot reach {service} at {client.base_url} ({exc.__class__.__name__}: {exc}). "
            f"Is `talkturo dev` running, and is {option} right?"
        )
    if not answer.is_success:
        _fail(_describe_error(answer, service))
    return answer.json() if answer.content else {}


def _describe_error(answer: Any, service: str = "the API") -> str:
    try:
        body = answer.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Not the API's envelope: the simulator's own error, or Twilio's {"message": …} body.
        detail = error or (body.get("message") if isinstance(body, dict) else None)
        text = str(detail or answer.text.strip()[:300] or answer.reason_phrase)
        return f"{service} answered {answer.status_code}: {text}"
    message = f"{error.get('message', 'request refused')} (HTTP {answer.status_code}"
    if error.get("code"):
        message += f", {error['code']}"
    if error.get("param"):
        message += f", param: {error['param']}"
    return message + ")"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _register() -> None:
    from talkturo.cli_billing import billing
    from talkturo.cli_campaigns import campaigns
    from talkturo.cli_events import events
    from talkturo.cli_test_runs import suite_command

    main.add_command(billing)
    main.add_command(campaigns)
    main.add_command(events)
    main.add_command(suite_command)


_register()

if __name__ == "__main__":
    main()
