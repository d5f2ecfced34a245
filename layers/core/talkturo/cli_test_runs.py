"""`talkturo test ASSISTANT SUITE.yaml`: run an assistant's test suite through the API and
print which expectation passed or failed, with the transcript lines that decided it
(docs/test-runs.md). Exit 0: every scenario passed; 1: one failed (or the run could not
finish); 2: bad input (the suite, the assistant, the request)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from talkturo.cli_campaigns import CONTEXT, _api_options

FINAL = ("passed", "failed", "error")
POLL_SECONDS = 1.0
MARK = {True: "✓", False: "✗"}
STATUS_MARK = {"passed": "✓", "failed": "✗", "error": "!", "running": "…", "queued": "·"}


def _bad_input(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _failure(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _expectation(item: dict[str, Any]) -> list[str]:
    head = f"    {MARK[bool(item['passed'])]} {item['kind']}: {_shown(item.get('expected'))}"
    if item.get("detail"):
        head += f" — {item['detail']}"
    lines = [head]
    for line in item.get("lines") or []:
        seconds = line.get("start_ms", 0) / 1000
        lines.append(f"        [{line['index']}] {seconds:6.1f}s {line['role']}: {line['text']}")
    return lines


def render_report(run: dict[str, Any]) -> str:
    """The run as a readable report: each scenario, each expectation ✓/✗ with its lines."""
    status = str(run["status"]).upper()
    out = [
        f"{run['suite_name']}: {status} — {run['passed']} passed, {run['failed']} failed, "
        f"{run['errored']} error of {run['scenario_count']} "
        f"(run {run['id']}, {run['test_seconds']} test seconds, "
        f"{run.get('credits_charged', '0')} credits)"
    ]
    for result in sorted(run.get("results") or [], key=lambda r: r.get("index", 0)):
        mark = STATUS_MARK.get(result["status"], "?")
        where = f"call {result['call_id']}" if result.get("call_id") else "no call"
        ended = f", ended {result['ended_reason']}" if result.get("ended_reason") else ""
        out.append(f"{mark} {result['name']} ({where}{ended})")
        if result.get("error"):
            out.append(f"    ! {result['error']}")
        for item in result.get("expectations") or []:
            out += _expectation(item)
    return "\n".join(out)


def progress_line(run: dict[str, Any]) -> str:
    return (
        f"{run['completed']}/{run['scenario_count']} scenarios done "
        f"({run['passed']} passed, {run['failed']} failed, {run['errored']} error)"
    )


def exit_code(run: dict[str, Any]) -> int:
    return 0 if run["status"] == "passed" else 1


def _read_suite(path: Path) -> dict[str, Any]:
    from talkturo.domain.test_runs import SuiteError, load_suite

    try:
        suite = load_suite(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        _bad_input(f"{path} cannot be read: {error}")
    except SuiteError as error:
        _bad_input(f"{path}: {error}")
    return suite.model_dump(mode="json", exclude_defaults=True)


def _answer(client: Any, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    from talkturo.cli import _describe_error

    try:
        answer = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        _failure(
            f"cannot reach the API at {client.base_url} ({exc.__class__.__name__}: {exc}). "
            "Is `talkturo dev` running, and is --api-url right?"
        )
    if answer.status_code in (400, 404, 409, 422):
        _bad_input(_describe_error(answer, "the API"))
    if not answer.is_success:
        _failure(_describe_error(answer, "the API"))
    return answer.json()


def _assistant_id(client: Any, assistant: str) -> str:
    if assistant.startswith("asst_"):
        return assistant
    named: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = _answer(client, "GET", "/v1/assistants", params=params)
        named += [a["id"] for a in page["data"] if a.get("name") == assistant]
        if not page.get("has_more"):
            break
        params = {"limit": 100, "starting_after": page["next_cursor"]}
    if len(named) != 1:
        how = "no assistant is" if not named else f"{len(named)} assistants are"
        _bad_input(f"{how} named {assistant!r}; give its id (asst_…) instead")
    return named[0]


@click.command("test", context_settings=CONTEXT)
@click.argument("assistant")
@click.argument("suite", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800,
    show_default=True,
    help="Seconds to wait for the run to finish.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON instead.")
@_api_options
def suite_command(
    assistant: str, suite: Path, timeout: float, as_json: bool, api_key: str, api_url: str
) -> None:
    """Run the test SUITE (YAML or JSON) against ASSISTANT (its id or name): one simulated call
    per scenario, then a report of every expectation. Exit 0 when all passed, 1 when one
    failed, 2 on bad input."""
    from talkturo.cli import _client

    if not suite.is_file():
        _bad_input(f"{suite} is not a file")
    body = _read_suite(suite)
    with _client(api_url, api_key) as client:
        assistant_id = _assistant_id(client, assistant)
        base = f"/v1/assistants/{assistant_id}/test-runs"
        run = _answer(client, "POST", base, json={"suite": body})
        click.echo(f"test run {run['id']}: {run['scenario_count']} scenarios queued", err=True)
        deadline = time.monotonic() + timeout
        shown = ""
        while run["status"] not in FINAL:
            if time.monotonic() > deadline:
                _failure(f"the run did not finish within {timeout:g} s ({progress_line(run)})")
            time.sleep(POLL_SECONDS)
            run = _answer(client, "GET", f"{base}/{run['id']}")
            line = progress_line(run)
            if line != shown:
                click.echo(line, err=True)
                shown = line
    click.echo(json.dumps(run, indent=2) if as_json else render_report(run))
    sys.exit(exit_code(run))
