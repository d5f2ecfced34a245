"""`talkturo events listen`: a small event inbox on this machine. It receives the account's
events over HTTP, verifies each signature with the endpoint's secret (the `standardwebhooks`
package, as a customer's receiver would) and prints what arrived.

With an API key (TALKTURO_API_KEY, as `talkturo dev` prints it) and no `--secret`, it registers
itself as a webhook endpoint of the account and deletes that endpoint when it stops; with
`--secret` it only listens (register the endpoint yourself: the command is printed).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click

from talkturo.cli_campaigns import CONTEXT, DEFAULT_API_URL, _request

PATH = "/events"
DEFAULT_PORT = 8040
MAX_BODY = 1_000_000


@dataclass
class Inbox:
    """What the receiver does with one request: verify, describe, count."""

    secret: str | None
    echo: Callable[[str], None] = click.echo
    received: int = 0
    verified: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    limit: int | None = None

    def take(self, headers: dict[str, str], body: bytes) -> int:
        """The status to answer: 204 for an event taken, 400 for a bad signature or body."""
        text = body.decode("utf-8", errors="replace")
        try:
            payload = json.loads(text)
        except ValueError:
            self.echo("✗ a request that is not JSON; ignored")
            return 400
        status = 204
        if self.secret is None:
            check = "signature not checked (no --secret)"
        else:
            from standardwebhooks import Webhook, WebhookVerificationError

            try:
                Webhook(self.secret).verify(text, headers)
            except WebhookVerificationError as error:
                check, status = f"✗ signature NOT valid ({error})", 400
            else:
                check = "✓ signature verified"
                self.verified += 1
        self.received += 1
        self.echo(
            f"{payload.get('created_at', '?')}  {payload.get('type', '?'):<24} "
            f"{payload.get('id', '?')}  {check}"
        )
        self.echo(f"    {summary(payload)}")
        if self.limit is not None and self.received >= self.limit:
            self.done.set()
        return status


def summary(payload: dict[str, Any]) -> str:
    """One line about the event's data: the object it is about and what changed."""
    data = payload.get("data") or {}
    if not isinstance(data, dict):
        return "(no data)"
    call = data.get("call")
    if isinstance(call, dict):
        parts = [f"call {call.get('id')}", str(call.get("status"))]
        if call.get("outcome"):
            parts.append(f"outcome {call['outcome']}")
        if "transcript" in data:
            parts.append(f"{len(data['transcript'])} transcript messages")
        analysis = data.get("analysis")
        if isinstance(analysis, dict):
            changes = analysis.get("crm_changes") or []
            written = [c.get("key") for c in changes if c.get("status") == "written"]
            parts.append(
                f"analysis v{analysis.get('version')} ({analysis.get('method')}): "
                + (f"wrote {', '.join(map(str, written))}" if written else "no CRM field written")
            )
        return ", ".join(parts)
    for name in ("campaign", "phone_number"):
        thing = data.get(name)
        if isinstance(thing, dict):
            return f"{name} {thing.get('id')}: {data.get('previous_status')} → {data.get('status')}"
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 160 else text[:159] + "…"


def _handler(inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path.split("?")[0] != PATH or length > MAX_BODY:
                self.send_response(404)
                self.end_headers()
                return
            body = self.rfile.read(length)
            status = inbox.take({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@click.group(context_settings=CONTEXT)
def events() -> None:
    """See the account's events arrive: a local, verifying event inbox."""


@events.command("listen", context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port.")
@click.option(
    "--secret",
    envvar="TALKTURO_WEBHOOK_SECRET",
    default=None,
    help="The endpoint's whsec_… secret: verify with it, do not register "
    "[env: TALKTURO_WEBHOOK_SECRET].",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only these event types (repeat the option); default: every type.",
)
@click.option("--count", type=int, default=None, help="Stop after this many events.")
@click.option("--api-key", envvar="TALKTURO_API_KEY", default=None, help="[env: TALKTURO_API_KEY]")
@click.option(
    "--api-url",
    envvar="TALKTURO_API_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    help="[env: TALKTURO_API_URL]",
)
def listen(
    host: str,
    port: int,
    secret: str | None,
    types: tuple[str, ...],
    count: int | None,
    api_key: str | None,
    api_url: str,
) -> None:
    """Receive, verify and print events. Ctrl-C stops it (and removes the endpoint it made)."""
    server = ThreadingHTTPServer((host, port), _handler(Inbox(secret=None)))
    url = f"http://{host}:{server.server_address[1]}{PATH}"
    endpoint_id = None
    if secret is None and api_key:
        body: dict[str, Any] = {"url": url, "description": "talkturo events listen"}
        if types:
            body["event_types"] = list(types)
        made = _request(api_url, api_key, "POST", "/v1/webhook-endpoints", json=body)
        endpoint_id, secret = made["id"], made["secret"]
        click.echo(f"registered {endpoint_id} for {url} (removed when this stops)")
    elif secret is None:
        click.echo("no --secret and no API key: events are printed but not verified. Register:")
        click.echo(
            f"  curl -s {api_url}/v1/webhook-endpoints -H 'Authorization: Bearer $TALKTURO_API_KEY'"
            f" -H 'Content-Type: application/json' -d '{{\"url\": \"{url}\"}}'"
        )
    inbox = Inbox(secret=secret, limit=count)
    server.RequestHandlerClass = _handler(inbox)
    click.echo(f"listening on {url}; waiting for events…")
    sys.stdout.flush()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        while not inbox.done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        if endpoint_id is not None and api_key:
            _request(api_url, api_key, "DELETE", f"/v1/webhook-endpoints/{endpoint_id}")
            click.echo(f"removed {endpoint_id}")
    click.echo(f"{inbox.received} events, {inbox.verified} verified")
