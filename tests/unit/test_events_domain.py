"""Customer events, the pure parts: Standard Webhooks signatures (verified with the
`standardwebhooks` package), secrets, event ids, the retry schedule, URL checks, the inbox."""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from talkturo.cli_events import Inbox, summary
from talkturo.domain.events import (
    RETRY_SCHEDULE_SECONDS,
    Event,
    event_id,
    new_secret,
    next_delay,
    signed_headers,
)
from talkturo.errors import InvalidRequest
from talkturo.http_guard import OutboundPolicy
from talkturo.services.events import check_url

LOOPBACK_HTTP = OutboundPolicy.from_env({"TALKTURO_OUTBOUND_ALLOW_HTTP": "127.0.0.0/8,::1/128"})


def _event() -> Event:
    return Event(
        id=event_id("acct_1", "call.ended:call_1"),
        type="call.ended",
        created_at=datetime(2026, 1, 31, 9, 0, tzinfo=UTC),
        data={"call": {"id": "call_1"}, "transcript": [{"role": "user", "text": "héllo"}]},
    )


def test_what_is_signed_verifies_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    event = _event()
    body = event.body()
    headers = signed_headers([secret], event.id, int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["webhook-signature"].startswith("v1,")


def test_a_changed_body_or_another_secret_fails_verification() -> None:
    secret = new_secret()
    event = _event()
    headers = signed_headers([secret], event.id, int(time.time()), event.body())
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(event.body().replace("call_1", "call_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(event.body(), headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    new, old = new_secret(), new_secret()
    event = _event()
    headers = signed_headers([new, old], event.id, int(time.time()), event.body())
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(event.body(), headers)


def test_secrets_are_whsec_and_24_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert new_secret() != secret


def test_the_event_id_derives_from_account_and_key() -> None:
    assert event_id("acct_1", "k") == event_id("acct_1", "k")
    assert event_id("acct_1", "k") != event_id("acct_2", "k")
    assert event_id("acct_1", "k") != event_id("acct_1", "k2")
    assert event_id("acct_1", "k").startswith("evt_") and len(event_id("acct_1", "k")) == 30


def test_the_retry_schedule_is_svix_s() -> None:
    assert RETRY_SCHEDULE_SECONDS == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert [next_delay(n) for n in range(1, 9)] == [5, 300, 1800, 7200, 18000, 36000, 36000, None]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "only https"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::ffff:10.0.0.1]/x", "private"),
        ("https://10.1.2.3/x", "private"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("ftp://hooks.example.com/x", "only https"),
        ("not a url", "only https"),
    ],
)
def test_urls_refused_when_an_endpoint_is_configured(url: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_url(url, policy=OutboundPolicy())
    assert refused.value.param == "url"
    assert why in refused.value.message


def test_plain_http_passes_only_to_the_local_inbox_networks() -> None:
    assert check_url("http://127.0.0.1:8040/events", policy=LOOPBACK_HTTP)
    assert check_url("http://localhost:8040/events", policy=LOOPBACK_HTTP)
    assert check_url("https://hooks.example.com/x", policy=LOOPBACK_HTTP)
    with pytest.raises(InvalidRequest, match="only https"):
        check_url("http://hooks.example.com/x", policy=LOOPBACK_HTTP)
    with pytest.raises(InvalidRequest, match="link-local"):
        check_url("http://169.254.169.254/", policy=LOOPBACK_HTTP)
    assert LOOPBACK_HTTP.plain_http_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_the_inbox_verifies_and_describes_what_arrives() -> None:
    secret = new_secret()
    lines: list[str] = []
    inbox = Inbox(secret=secret, echo=lines.append, limit=2)
    event = _event()
    headers = signed_headers([secret], event.id, int(time.time()), event.body())
    assert inbox.take(headers, event.body().encode()) == 204
    assert "✓ signature verified" in lines[0] and "call.ended" in lines[0]
    assert "call call_1" in lines[1] and "1 transcript messages" in lines[1]
    forged = signed_headers([new_secret()], event.id, int(time.time()), event.body())
    assert inbox.take(forged, event.body().encode()) == 400
    assert "NOT valid" in lines[2]
    assert inbox.done.is_set() and (inbox.received, inbox.verified) == (2, 1)


def test_the_inbox_says_what_an_analysis_wrote() -> None:
    data = {
        "call": {"id": "call_1", "status": "ended", "outcome": "answered"},
        "analysis": {
            "version": 1,
            "method": "offline",
            "crm_changes": [
                {"key": "email", "status": "abstained"},
                {"key": "meeting_day", "status": "written"},
            ],
        },
    }
    line = summary({"type": "call.analyzed", "data": data})
    assert line == (
        "call call_1, ended, outcome answered, analysis v1 (offline): wrote meeting_day"
    )
    data["analysis"]["crm_changes"] = []  # type: ignore[index]
    assert summary({"data": data}).endswith("analysis v1 (offline): no CRM field written")
