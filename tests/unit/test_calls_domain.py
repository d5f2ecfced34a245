"""Call records: how carrier events move them, signed tokens, the TwiML answers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from talkturo import tokens
from talkturo.domain.calls import (
    STATUS_RANK,
    CallRecord,
    answered_by_of,
    apply,
    event_of_twilio,
    timed_out,
)
from talkturo.webhooks import carrier

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _call(**changes: object) -> CallRecord:
    base = CallRecord(
        id="call_01J0000000000000000000000A",
        direction="outbound",
        status="queued",
        assistant_id="asst_1",
        phone_number_id="pn_1",
        from_number="+14155550140",
        to_number="+14155550199",
        created_at=T0,
    )
    return base.model_copy(update=changes)


def _run(call: CallRecord, *statuses: str, **kwargs: str) -> CallRecord:
    for index, status in enumerate(statuses):
        event = event_of_twilio(status, at=T0 + timedelta(seconds=index), **kwargs)
        call = apply(call, event) or call
    return call


@pytest.mark.parametrize(
    ("twilio", "status", "outcome", "reason"),
    [
        ("initiated", "queued", None, None),
        ("queued", "queued", None, None),
        ("ringing", "ringing", None, None),
        ("in-progress", "in_progress", None, None),
        ("completed", "ended", "answered", "caller_hung_up"),
        ("busy", "ended", "busy", "busy"),
        ("no-answer", "ended", "no_answer", "no_answer"),
        ("failed", "ended", "failed", "failed"),
        ("canceled", "ended", "failed", "canceled"),
    ],
)
def test_twilio_statuses_map_to_the_platforms(
    twilio: str, status: str, outcome: str | None, reason: str | None
) -> None:
    event = event_of_twilio(twilio, at=T0, duration="7")
    assert (event.status, event.outcome, event.ended_reason) == (status, outcome, reason)


def test_ranks_only_go_forward() -> None:
    assert [STATUS_RANK[s] for s in ("queued", "ringing", "in_progress", "ended")] == [0, 1, 2, 3]
    # Given a call in progress, When a late "ringing" arrives, Then nothing changes
    live = _run(_call(), "initiated", "ringing", "in-progress")
    assert live.status == "in_progress" and live.answered_at is not None
    assert apply(live, event_of_twilio("ringing", at=T0)) is None
    assert apply(live, event_of_twilio("in-progress", at=T0)) is None


def test_the_end_is_written_once() -> None:
    ended = _run(_call(), "in-progress", "completed", duration="42")
    assert (ended.status, ended.outcome, ended.duration_seconds) == ("ended", "answered", 42)
    # When a duplicated or a different final status arrives, Then the end stays
    assert apply(ended, event_of_twilio("completed", at=T0, duration="99")) is None
    assert apply(ended, event_of_twilio("failed", at=T0)) is None


def test_a_completed_callback_before_in_progress_still_answers_the_call() -> None:
    # Given a call created 20 s before its only callback, `completed` with a 10 s duration
    call = _call(created_at=T0 - timedelta(seconds=20))
    ended = _run(call, "completed", duration="10")
    # Then it was answered 10 s before the end
    assert ended.outcome == "answered" and ended.answered_at == T0 - timedelta(seconds=10)


def test_the_answer_is_never_before_the_record_existed() -> None:
    # Given an inbound call recorded at T0 whose only callback comes 1 s later with the
    # carrier's duration rounded up to 2 s
    ended = _run(_call(direction="inbound", status="ringing"), "ringing", "completed", duration="2")
    # Then it was answered when it was recorded, not before
    assert ended.answered_at == T0


def test_machine_verdict_makes_voicemail_before_or_after_the_end() -> None:
    before = _call(status="in_progress", answered_at=T0)
    before = apply(before, event_of_twilio(None, at=T0, answered_by="machine_end_beep")) or before
    assert before.answered_by == "machine"
    assert _run(before, "completed", duration="5").outcome == "voicemail"
    # Given the end arrived first, When the AMD verdict comes late, Then it still counts
    ended = _run(_call(), "in-progress", "completed", duration="5")
    late = apply(ended, event_of_twilio(None, at=T0, answered_by="machine_start"))
    assert late is not None and late.outcome == "voicemail" and late.duration_seconds == 5
    human = apply(ended, event_of_twilio(None, at=T0, answered_by="human"))
    assert human is not None and human.outcome == "answered"


def test_unanswered_ends_have_no_duration() -> None:
    busy = _run(_call(), "initiated", "busy", duration="3")
    assert (busy.outcome, busy.duration_seconds, busy.answered_at) == ("busy", 0, None)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("human", "human"),
        ("machine_start", "machine"),
        ("machine_end_beep", "machine"),
        ("machine_end_silence", "machine"),
        ("fax", "machine"),
        ("unknown", "unknown"),
        ("", None),
    ],
)
def test_answered_by(given: str, expected: str | None) -> None:
    assert answered_by_of(given) == expected


def test_timeout_ends_an_open_call() -> None:
    live = _call(status="in_progress", answered_at=T0, max_duration_seconds=60)
    ended = apply(live, timed_out(live, T0 + timedelta(hours=1)))
    assert ended is not None
    assert (ended.status, ended.ended_reason, ended.outcome) == ("ended", "timeout", "answered")
    assert ended.duration_seconds == 60
    queued = _call()
    never = apply(queued, timed_out(queued, T0 + timedelta(hours=1)))
    assert never is not None and (never.outcome, never.ended_reason) == ("failed", "timeout")


def test_tokens_sign_verify_and_expire() -> None:
    token = tokens.sign({"call": "call_1"}, "s3cret", ttl_seconds=120, now=1000.0)
    assert tokens.verify(token, "s3cret", now=1100.0)["call"] == "call_1"
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(token, "s3cret", now=1120.0)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(token, "other", now=1000.0)
    _payload, mac = token.split(".")
    forged = tokens._b64(b'{"call":"call_2","exp":99999}') + "." + mac
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(forged, "s3cret", now=1000.0)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("garbage", "s3cret")


def test_stream_twiml_carries_a_verifiable_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from talkturo import config

    monkeypatch.setenv("VOICE_TOKEN_SECRET", "k")
    monkeypatch.setenv("VOICE_SERVICE_URL", "wss://voice.example.com")
    config.get_settings.cache_clear()
    try:
        twiml = carrier.stream_twiml("acct_1", _call())
    finally:
        config.get_settings.cache_clear()
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://voice.example.com/media"
    parameter = stream.find("./Parameter")
    assert parameter is not None and parameter.get("name") == "token"
    claims = tokens.verify(str(parameter.get("value")), "k")
    assert claims["call"] == _call().id and claims["account"] == "acct_1"


def test_not_available_twiml_says_so_and_hangs_up() -> None:
    root = ET.fromstring(carrier.not_available_twiml())
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == carrier.NOT_AVAILABLE


@pytest.mark.parametrize(
    ("scheme", "host", "port", "expected"),
    [
        ("https", "api.example.com", "443", "https://api.example.com/carrier/status?a=1"),
        ("http", "localhost", "80", "http://localhost/carrier/status?a=1"),
        ("http", "127.0.0.1", "8000", "http://127.0.0.1:8000/carrier/status?a=1"),
        (
            "https",
            "api.example.com:8443",
            "8443",
            "https://api.example.com:8443/carrier/status?a=1",
        ),
    ],
)
def test_request_url(scheme: str, host: str, port: str, expected: str) -> None:
    got = carrier.request_url(
        scheme=scheme, host=host, port=port, path="/carrier/status", query="a=1"
    )
    assert got == expected
