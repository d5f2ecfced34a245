"""Conversations through the carrier simulator: a scripted caller on the phone network, the voice
service with scripted providers, and what the call record, transcript and recording say after."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from talkturo import audio
from talkturo.local.template import Stack
from talkturo.simcaller.scripts import parse_script
from tests.conftest import Tenant
from tests.integration import calls_setup
from tests.voice.harness import VoiceNetwork, voice_network, wait_for_call_record


@pytest.fixture
def net(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[VoiceNetwork]:
    with voice_network(stack, monkeypatch) as network:
        yield network


def _line(client: TestClient, stack: Stack, tenant: Tenant, **changes: object) -> calls_setup.Line:
    offer = client.get("/v1/phone-numbers/available?country=US&limit=1", headers=tenant.headers)
    line = calls_setup.line(client, stack, tenant, offer.json()["data"][0]["phone_number"])
    if changes:
        patched = client.patch(
            f"/v1/assistants/{line.assistant_id}", json=changes, headers=tenant.headers
        )
        assert patched.status_code == 200, patched.text
    return line


def _inbound(
    net: VoiceNetwork, client: TestClient, tenant: Tenant, line: calls_setup.Line, steps: list
) -> tuple[dict, dict]:
    sid = net.sim.dial(line.phone_number, script=parse_script({"steps": steps}))
    final = net.sim.wait_for_call(sid, timeout=40)
    calls = client.get("/v1/calls?direction=inbound", headers=tenant.headers).json()["data"]
    assert len(calls) == 1, calls
    record = wait_for_call_record(client, tenant.headers, calls[0]["id"])
    return final, record


def _transcript(client: TestClient, tenant: Tenant, call_id: str) -> list[dict]:
    got = client.get(f"/v1/calls/{call_id}/transcript", headers=tenant.headers)
    assert got.status_code == 200, got.text
    return got.json()["messages"]


def _channels(wav_bytes: bytes) -> tuple[list[int], list[int]]:
    """Per 100 ms window, the RMS of the left and the right channel."""
    import audioop

    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = wav.readframes(wav.getnframes())
    left = audioop.tomono(frames, 2, 1, 0)
    right = audioop.tomono(frames, 2, 0, 1)
    step = 1600  # 100 ms of 16-bit samples
    return (
        [audioop.rms(left[i : i + step], 2) for i in range(0, len(left), step)],
        [audioop.rms(right[i : i + step], 2) for i in range(0, len(right), step)],
    )


def test_greeting_then_a_two_turn_conversation_is_transcribed_and_recorded(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Hello {{contact.first_name}}, this is Ada.")
    net.scripted.transcriber.lines = ["I would like to book a table", "For two people please"]
    replies = iter(["Of course. For how many people?", "Great, two people it is."])
    net.scripted.model.respond = lambda request: [next(replies)]
    final, record = _inbound(
        net,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.6},
            {"say": "I would like to book a table"},
            {"wait_for_silence": 0.6},
            {"say": "For two people please"},
            {"wait_for_silence": 0.6},
            "hang_up",
        ],
    )
    assert record["outcome"] == "answered" and record["ended_reason"] == "caller_hung_up"
    messages = _transcript(client, tenant, record["id"])
    spoken = [(m["role"], m["text"]) for m in messages if m["role"] in ("user", "assistant")]
    assert spoken == [
        ("assistant", "Hello, this is Ada."),
        ("user", "I would like to book a table"),
        ("assistant", "Of course. For how many people?"),
        ("user", "For two people please"),
        ("assistant", "Great, two people it is."),
    ]
    times = [m["start_ms"] for m in messages]
    assert times == sorted(times)
    # The model saw the conversation so far, with the prompt rendered.
    last = net.scripted.model.requests[-1]
    assert [m.role for m in last.messages] == ["assistant", "user", "assistant", "user"]
    # The caller heard every reply (the simulator keeps what it played).
    assert final["party"]["heard_audio_seconds"] > 2
    assert not final["party"]["protocol_errors"]
    # The recording: stereo, the caller left and the assistant right, in time.
    assert record["recording_available"]
    link = client.get(f"/v1/calls/{record['id']}/recording", headers=tenant.headers)
    assert link.status_code == 200, link.text
    wav_bytes = httpx.get(link.json()["url"]).content
    left, right = _channels(wav_bytes)
    assert max(left) > 1000 and max(right) > 1000
    # The greeting plays before the caller first speaks: the assistant channel has sound first.
    first_right = next(i for i, v in enumerate(right) if v > 1000)
    first_left = next(i for i, v in enumerate(left) if v > 1000)
    assert first_right < first_left
    assert audio.SAMPLE_RATE == 8000


def test_the_caller_interrupting_stops_the_assistant_and_the_transcript_keeps_what_was_heard(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Hi.")
    long_reply = (
        "Let me tell you about every single one of our opening hours, our menus, our prices, "
        "the parking situation, the history of the restaurant and the chef, and much more."
    )
    net.scripted.transcriber.lines = ["Tell me everything", "Wait stop"]
    replies = iter([long_reply, "Sorry, go ahead."])
    net.scripted.model.respond = lambda request: [next(replies)]
    final, record = _inbound(
        net,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.5},
            {"say": "Tell me everything"},
            {"interrupt": {"text": "Wait stop", "timeout": 10}},
            {"wait_for_silence": 0.6},
            "hang_up",
        ],
    )
    messages = _transcript(client, tenant, record["id"])
    cut = [m for m in messages if m["role"] == "assistant" and m["interrupted"]]
    assert len(cut) == 1, [
        (m["role"], m["text"], m["start_ms"], m["interrupted"]) for m in messages
    ]
    # What the caller heard is a true beginning of the reply, shorter than all of it.
    heard = cut[0]["text"]
    assert heard and long_reply.startswith(heard.rstrip(",.")) and len(heard) < len(long_reply) / 2
    # The carrier was told to drop the rest at once.
    assert final["party"]["cleared"], final["party"]
    # The model's next request holds only what was heard, and the answer to the interruption.
    last = net.scripted.model.requests[-1]
    assert last.messages[-1].text == "Wait stop"
    assert long_reply not in [m.text for m in last.messages]
    spoken = [m["text"] for m in messages if m["role"] == "assistant"]
    assert spoken[-1] == "Sorry, go ahead."


def test_end_call_tool_speaks_the_closing_line_and_hangs_up(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    from talkturo.voice.providers.scripted import tool

    line = _line(
        client,
        stack,
        tenant,
        first_message="Hi.",
        tools=[{"type": "end_call", "config": {"closing_message": "Goodbye from Ada."}}],
    )
    net.scripted.transcriber.lines = ["That is all thanks"]
    net.scripted.model.respond = lambda request: ["Happy to help.", tool("end_call", reason="done")]
    # The caller never hangs up: the assistant ends the call.
    final, record = _inbound(
        net, client, tenant, line, [{"wait_for_silence": 0.5}, {"say": "That is all thanks"}]
    )
    assert record["ended_reason"] == "assistant_ended" and record["outcome"] == "answered"
    messages = _transcript(client, tenant, record["id"])
    calls = [m for m in messages if m["role"] == "assistant" and m["tool_calls"]]
    assert calls and calls[0]["tool_calls"][0]["name"] == "end_call"
    assert any(m["role"] == "tool" and m["name"] == "end_call" for m in messages)
    assert [m["text"] for m in messages if m["role"] == "assistant"][-1] == "Goodbye from Ada."
    # The tool is offered to the model with its schema.
    assert [t.name for t in net.scripted.model.requests[0].tools] == ["end_call", "opt_out"]
    assert final["status"] == "completed"


def test_an_end_call_phrase_ends_the_call_without_asking_the_model(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    line = _line(
        client,
        stack,
        tenant,
        first_message="Hi.",
        tools=[{"type": "end_call", "config": {"phrases": ["goodbye"]}}],
    )
    net.scripted.transcriber.lines = ["OK Goodbye"]
    _, record = _inbound(
        net, client, tenant, line, [{"wait_for_silence": 0.5}, {"say": "OK goodbye"}]
    )
    assert record["ended_reason"] == "assistant_ended"
    assert net.scripted.model.requests == []


def test_keypad_digits_reach_the_model(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Press one for sales.")
    net.scripted.model.respond = lambda request: ["You chose sales."]
    _, record = _inbound(
        net,
        client,
        tenant,
        line,
        [{"wait_for_silence": 0.5}, {"press": "12"}, {"wait_for_silence": 0.5}, "hang_up"],
    )
    asked = net.scripted.model.requests[0].messages[-1]
    assert asked.role == "user" and "12" in asked.text
    messages = _transcript(client, tenant, record["id"])
    assert [m["text"] for m in messages if m["role"] == "assistant"][-1] == "You chose sales."


def test_a_webhook_tool_is_called_and_the_assistant_speaks_from_its_answer(
    client: TestClient, stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.http_guard import OutboundPolicy
    from talkturo.voice.providers.base import ChatRequest
    from talkturo.voice.providers.scripted import tool
    from talkturo.voice.session import SessionServices
    from talkturo.voice.tools import webhook
    from tests.asgi_server import served

    received: list[dict] = []
    hook = FastAPI()

    @hook.post("/orders")
    async def orders(request: Request) -> dict:
        received.append({"body": await request.json(), "headers": dict(request.headers)})
        return {"order": "A-17", "status": "shipped", "eta": "Tuesday"}

    with served(hook) as hook_url:

        class LocalWebhooks(SessionServices):
            # The configured URL must be https and public; the test's server is neither, so
            # the call goes to it under a policy that lets loopback through.
            async def webhook(self, tool_, arguments, call):  # type: ignore[no-untyped-def]
                local = tool_.config.model_copy(update={"url": f"{hook_url}/orders"})
                policy = OutboundPolicy(require_https=False, allowed_networks=(_LOOPBACK,))
                return await webhook.call_webhook(local, arguments, call=call, policy=policy)

        with voice_network(stack, monkeypatch, services=LocalWebhooks()) as net:
            line = _line(
                client,
                stack,
                tenant,
                first_message="Hi.",
                tools=[
                    {
                        "type": "webhook",
                        "config": {
                            "name": "lookup_order",
                            "description": "Find an order by its number.",
                            "parameters": {
                                "type": "object",
                                "properties": {"order_number": {"type": "string"}},
                                "required": ["order_number"],
                            },
                            "url": "https://orders.example.com/lookup",
                            "headers": {"X-Shop": "north"},
                            "secret": "s3cret-signing-key",
                        },
                    }
                ],
            )
            net.scripted.transcriber.lines = ["Where is my order A 17"]

            def respond(request: ChatRequest) -> list:
                last = request.messages[-1]
                if last.role == "tool":
                    return [f"Your order {last.text and 'A-17'} has shipped and arrives Tuesday."]
                return [tool("lookup_order", order_number="A-17")]

            net.scripted.model.respond = respond
            _, record = _inbound(
                net,
                client,
                tenant,
                line,
                [
                    {"wait_for_silence": 0.5},
                    {"say": "Where is my order A 17"},
                    {"wait_for_silence": 1.5},
                    "hang_up",
                ],
            )
    assert received, [m["text"] for m in _transcript(client, tenant, record["id"])]
    assert received[0]["body"]["arguments"] == {"order_number": "A-17"}
    assert received[0]["headers"]["x-shop"] == "north"
    assert received[0]["headers"]["x-talkturo-signature"].startswith("t=")
    messages = _transcript(client, tenant, record["id"])
    results = [m for m in messages if m["role"] == "tool"]
    assert results and '"shipped"' in results[0]["text"] and results[0]["name"] == "lookup_order"
    spoken = [m["text"] for m in messages if m["role"] == "assistant"]
    # No silence while the tool ran: a short filler, then the answer from the result.
    assert "One moment, please." in spoken
    assert spoken[-1] == "Your order A-17 has shipped and arrives Tuesday."


def test_a_meeting_booked_during_the_call_lands_on_the_call_record(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    net: VoiceNetwork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    from talkturo.voice.providers.base import ChatRequest
    from talkturo.voice.providers.scripted import tool
    from tests.asgi_server import served
    from tests.providers.fake_scheduling import FakeCalcom

    start = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=15, minute=0, second=0, microsecond=0
    )
    fake = FakeCalcom(api_key="cal_live_key", event_type_id=4242, slots=[start])
    with served(fake.app) as base:
        monkeypatch.setenv("CALCOM_BASE_URL", base)
        line = _line(
            client,
            stack,
            tenant,
            first_message="Hi.",
            tools=[
                {
                    "type": "scheduling",
                    "config": {
                        "provider": "calcom",
                        "api_key": "cal_live_key",
                        "event_type": "4242",
                        "timezone": "UTC",
                    },
                }
            ],
        )
        net.scripted.transcriber.lines = ["Book me in please"]

        def respond(request: ChatRequest) -> list:
            if request.messages[-1].role == "tool":
                return ["You're booked."]
            return [
                "Let me book that.",
                tool(
                    "book_meeting",
                    start=start.isoformat(),
                    name="Ada Lovelace",
                    email="ada@example.com",
                ),
            ]

        net.scripted.model.respond = respond
        _, record = _inbound(
            net,
            client,
            tenant,
            line,
            [
                {"wait_for_silence": 0.5},
                {"say": "Book me in please"},
                {"wait_for_silence": 1.0},
                "hang_up",
            ],
        )
    assert len(fake.bookings) == 1, [m["text"] for m in _transcript(client, tenant, record["id"])]
    assert [b["provider"] for b in record["bookings"]] == ["calcom"]
    assert record["bookings"][0]["attendee_email"] == "ada@example.com"
    assert datetime.fromisoformat(record["bookings"][0]["start"]) == start


_LOOPBACK = __import__("ipaddress").ip_network("127.0.0.0/8")


def _transfer_line(client: TestClient, stack: Stack, tenant: Tenant, destination: str):  # type: ignore[no-untyped-def]
    return _line(
        client,
        stack,
        tenant,
        first_message="Hi.",
        tools=[
            {
                "type": "transfer_call",
                "config": {
                    "mode": "cold",
                    "destinations": [{"name": "Sales", "number": destination}],
                },
            }
        ],
    )


def _asks_for_sales(net: VoiceNetwork) -> None:
    from talkturo.voice.providers.scripted import tool

    net.scripted.transcriber.lines = ["Sales please"]
    net.scripted.model.respond = lambda request: [
        "Transferring you to sales.",
        tool("transfer_call", destination="Sales"),
    ]


def test_a_cold_transfer_puts_the_caller_through_and_the_call_ends_transferred(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    sales = "+14155550188"
    net.sim.set_callee(sales, "human", ring_seconds=0.5, talk_seconds=2)
    line = _transfer_line(client, stack, tenant, sales)
    _asks_for_sales(net)
    final, record = _inbound(
        net,
        client,
        tenant,
        line,
        [{"wait_for_silence": 0.5}, {"say": "Sales please"}, {"wait_seconds": 30}],
    )
    assert record["ended_reason"] == "transferred", record
    assert record["transferred_to"] == "Sales"
    messages = _transcript(client, tenant, record["id"])
    assert any(m["role"] == "system" and "transferred" in m["text"] for m in messages)
    assert [m["name"] for m in messages if m["role"] == "tool"] == ["transfer_call"]
    assert final["status"] == "completed"


def test_a_transfer_that_fails_comes_back_to_the_assistant(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    sales = "+14155550189"
    net.sim.set_callee(sales, "busy")
    line = _transfer_line(client, stack, tenant, sales)
    _asks_for_sales(net)
    _, record = _inbound(
        net,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.5},
            {"say": "Sales please"},
            {"wait_seconds": 10},  # the transfer ends this stream (and this step)
            {"wait_for_silence": {"seconds": 0.6, "timeout": 20}},  # back with the assistant
            "hang_up",
        ],
    )
    assert record["ended_reason"] == "caller_hung_up", record
    assert record["transfer_status"] == "busy"
    messages = _transcript(client, tenant, record["id"])
    spoken = [m["text"] for m in messages if m["role"] == "assistant"]
    # One transcript across both media streams: the greeting, the handoff, the way back.
    assert spoken[0] == "Hi." and "Transferring you to sales." in spoken
    assert spoken[-1] == "I'm sorry, I couldn't reach Sales. Is there anything else I can do?"
    # One recording across both streams: the greeting near its start, the apology at its end,
    # each where the transcript says it was.
    link = client.get(f"/v1/calls/{record['id']}/recording", headers=tenant.headers)
    _, right = _channels(httpx.get(link.json()["url"]).content)
    greeting, apology = messages[0], messages[-1]
    assert greeting["role"] == "assistant" and apology["role"] == "assistant"
    assert max(right[greeting["start_ms"] // 100 : greeting["end_ms"] // 100 + 1]) > 1000
    assert max(right[apology["start_ms"] // 100 : apology["end_ms"] // 100 + 1]) > 1000
    assert len(right) * 100 >= apology["end_ms"] - 200


def test_a_warm_transfer_briefs_the_person_with_a_summary_then_bridges_the_caller(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    from talkturo.store import calls as call_store
    from talkturo.voice.providers.base import ChatRequest
    from talkturo.voice.providers.scripted import tool

    supervisor = "+14155550187"
    dana = parse_script({"steps": [{"say": "Hi, this is Dana."}, {"wait_seconds": 1}, "hang_up"]})
    net.sim.set_callee(supervisor, "human", ring_seconds=0.5, script=dana)
    line = _line(
        client,
        stack,
        tenant,
        first_message="Hi.",
        tools=[
            {
                "type": "transfer_call",
                "config": {
                    "mode": "warm",
                    "warm_intro": "Transfer from the {{account.name}} assistant.",
                    "destinations": [{"name": "Sales", "number": supervisor}],
                },
            }
        ],
    )
    net.scripted.transcriber.lines = ["I want to buy ten licences"]

    def respond(request: ChatRequest) -> list:
        if request.system_prompt.startswith("Summarise"):
            return ["The caller wants to buy ten licences."]
        return ["Let me get sales.", tool("transfer_call", destination="Sales")]

    net.scripted.model.respond = respond
    _, record = _inbound(
        net,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.5},
            {"say": "I want to buy ten licences"},
            {"wait_seconds": 30},
        ],
    )
    assert record["ended_reason"] == "transferred" and record["transferred_to"] == "Sales"
    leg = call_store.get(tenant.account_id, record["id"]).transfer_leg_sid
    assert leg
    briefed = net.sim.wait_for_call(leg, timeout=20)
    said = [h["text"] for h in briefed["party"]["heard"] if h.get("kind") == "say"]
    assert said and said[0].startswith("Transfer from the ")
    assert "The caller wants to buy ten licences." in said[0]
    # The summary request saw the conversation so far.
    summary = next(r for r in net.scripted.model.requests if r.system_prompt.startswith("Summ"))
    assert "I want to buy ten licences" in summary.messages[0].text
