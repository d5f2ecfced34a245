"""A conversation on the local platform, as a newcomer has it: a scripted caller dials the
assistant's number, talks, interrupts the assistant, says goodbye, on which the development
model uses the end_call tool; then the transcript and the stereo recording are read through the
API. Real processes, real sockets: `talkturo dev` with its offline stand-ins (Whisper and Piper
with the `speech` extra, else pocketsphinx and espeak-ng; the development model). With Whisper
the caller's words must end the call; only pocketsphinx may leave it to the script's keypad
fallback (it often mishears "goodbye")."""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path

import httpx
import pytest

from talkturo.voice.providers.stt import whisper
from tests.e2e.conftest import LocalPlatform
from tests.e2e.test_calls_local import Line, eventually, new_line

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "caller.yaml"
CALLER = "+12025550181"
CLOSING = "Thanks for calling. Goodbye."


@pytest.fixture(scope="module")
def line(local_platform: LocalPlatform) -> Line:
    return new_line(local_platform, "Conversation e2e")


def test_a_scripted_caller_has_a_conversation_with_a_tool_and_an_interruption(
    local_platform: LocalPlatform, line: Line
) -> None:
    with local_platform.client(line.api_key) as api:
        patched = api.patch(
            f"/v1/assistants/{line.assistant_id}",
            json={
                "first_message": "Hello, this is the front desk.",
                "telephony": {"inbound_enabled": True},
                "tools": [{"type": "end_call", "config": {"closing_message": CLOSING}}],
            },
        )
        assert patched.status_code == 200, patched.text
    done = local_platform.cli(
        "call",
        "dial",
        "--to",
        line.phone_number,
        "--from",
        CALLER,
        "--script",
        str(EXAMPLE),
        "--timeout",
        "120",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "said (interrupting)" in done.stdout, done.stdout
    sid = re.search(r"Calling \S+ from \S+: (CA\w+)", done.stdout)
    assert sid is not None

    with local_platform.client(line.api_key) as api:
        calls = eventually(
            lambda: api.get("/v1/calls", params={"direction": "inbound"}).json()["data"],
            lambda found: any(
                c["from_number"] == CALLER and c["transcript_available"] for c in found
            ),
            60,
            "the call is over and its transcript saved",
        )
        call = next(c for c in calls if c["from_number"] == CALLER)
        assert call["ended_reason"] == "assistant_ended", call
        messages = api.get(f"/v1/calls/{call['id']}/transcript").json()["messages"]
        link = api.get(f"/v1/calls/{call['id']}/recording")
    roles = [m["role"] for m in messages]
    # The stand-ins are named, the caller was heard, the assistant answered.
    assert any("development model" in m["text"] for m in messages if m["role"] == "system")
    assert "user" in roles and roles.count("assistant") >= 3, messages
    # The interruption: an answer cut short, marked so.
    assert any(m["role"] == "assistant" and m["interrupted"] for m in messages), messages
    # The tool: the model called end_call on the caller's words, and the closing line was
    # spoken. Only without the `speech` extra may the keypad fallback have done it.
    lines = [(m["role"], m["text"]) for m in messages]
    neural = any(
        m["role"] == "system" and m["text"].startswith("transcriber: the offline Whisper")
        for m in messages
    )
    # The platform runs from this install: Whisper serves exactly when the extra is here.
    assert neural == whisper.available(), lines
    said = [m["text"] for m in messages if m["role"] == "user"]
    ends = [
        m["tool_calls"][0]
        for m in messages
        if m["role"] == "assistant" and m["tool_calls"] and m["tool_calls"][0]["name"] == "end_call"
    ]
    if neural:
        # What the transcript says the caller said is what the script said.
        assert "book a table" in said[0].lower(), lines
        assert "goodbye" in said[-1].lower() and not any("pressed" in s for s in said), lines
        assert [c["arguments"]["reason"] for c in ends] == ["caller said goodbye"], lines
    else:
        assert "goodbye" in said[-1].lower() or "pressed 9" in said[-1], lines
        assert ends, lines
    assert [m["text"] for m in messages if m["role"] == "assistant"][-1] == CLOSING

    # The recording plays: a stereo WAV, the caller left and the assistant right.
    assert link.status_code == 200, link.text
    wav_bytes = httpx.get(link.json()["url"]).content
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        seconds = wav.getnframes() / wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    assert seconds > 5
    samples = memoryview(frames).cast("h")
    left, right = samples[0::2], samples[1::2]
    assert max(abs(v) for v in left) > 2000 and max(abs(v) for v in right) > 2000
