"""The local development model: a deterministic script that stands in for a language model when
no provider key is configured. It is not AI and says so: the first reply of a conversation
begins with `LABEL`.

It looks at the request's tools and the last messages only:
- after tool results: one short sentence per result (slots offered, booking confirmed, the
  failure apologised for, or a compact reading of the JSON);
- after the caller's words (lower-cased, punctuation dropped, matched by word stems so a
  recognition error or two still lands): a keypad press is read back (9 → `end_call`, 0 →
  `transfer_call`, when the assistant has them); a request not to be called again (the default
  opt-out phrases) → `opt_out`; goodbye → `end_call`;
  a person → `transfer_call`; yes/book after offered slots → `book_meeting` with the first
  slot; availability/appointment → `check_availability` for tomorrow; words of a webhook
  tool's name or description → that tool, its required parameters filled from the schema;
  anything else is echoed.
Replies stream as a few `TextDelta`s of word groups, without delay; tool calls get unique ids.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from talkturo.domain.assistant_tools import DEFAULT_OPT_OUT_PHRASES, phrase_said
from talkturo.voice.providers.base import (
    ChatMessage,
    ChatRequest,
    Finished,
    LlmEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
)

PROVIDER = "dev"
LABEL = "This is the local development model, not a real language model."
LABEL_MARK = "local development model"
WORDS_PER_DELTA = 3
MAX_RESULT_WORDS = 30
MAX_ECHO_WORDS = 40
SLOTS_READ = 3

END_CALL, TRANSFER_CALL = "end_call", "transfer_call"
CHECK_AVAILABILITY, BOOK_MEETING = "check_availability", "book_meeting"
OPT_OUT = "opt_out"
# Offered by the platform, never matched like a webhook by the words of its description.
BUILT_IN = frozenset({END_CALL, TRANSFER_CALL, CHECK_AVAILABILITY, BOOK_MEETING, OPT_OUT})

# Stems match the start of a word; phrases (with short words that would match too much as
# stems) match whole words.
GOODBYE_STEMS = ("goodby", "farewell")
GOODBYE_PHRASES = ("bye", "thats all", "that is all", "hang up", "good by", "see you")
TRANSFER_STEMS = ("transfer", "human", "representativ", "operator", "supervisor", "manager")
TRANSFER_PHRASES = ("person", "agent", "agents", "real person", "someone real")
AVAILABILITY_STEMS = ("availab", "appointment", "meeting", "schedul", "slot", "book")
AVAILABILITY_PHRASES = ("meet", "free time")
BOOK_STEMS = ("book", "confirm")
BOOK_PHRASES = ("yes", "yeah", "yep", "sure", "okay", "ok", "first one", "that works")
DTMF_PATTERNS = (
    re.compile(r"\[\s*dtmf[\s:]*([0-9*#a-d]+)\s*\]", re.IGNORECASE),
    re.compile(r"caller pressed\s+([0-9*#]+)", re.IGNORECASE),
)
KEY_NAMES = {"*": "star", "#": "pound"}
# Words of four letters or more too common in tool descriptions to say which tool is meant.
STOPWORDS = frozenset(
    """that this with from have will when what your they them then than into only also some
    such their there which would could should about after before call calls caller callers
    return returns tool tools given using uses here were been does like just more most other
    please want need know tell make because where each very same these those while okay yeah
    thanks thank""".split()  # noqa: SIM905 - a word list reads better as text
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class DevelopmentModel:
    provider = PROVIDER

    def __init__(self, today: Callable[[], date] = date.today) -> None:
        self._today = today

    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        text, calls = self._reply(request)
        if not _labelled(request.messages):
            text = f"{LABEL} {text}".strip()
        for delta in _word_groups(text):
            yield TextDelta(delta)
        for call in calls:
            yield call
        yield Finished("tool_calls" if calls else "stop")

    def _reply(self, request: ChatRequest) -> tuple[str, list[ToolCall]]:
        """The scripted reply to the conversation so far (without the label)."""
        messages = request.messages
        if not messages or messages[-1].role == "assistant":
            return "Hello, how can I help you?", []
        if messages[-1].role == "tool":
            return _results_sentence(messages), []
        return self._answer(messages[-1].text, request)

    # ------------------------------------------------------------------ the caller's words
    def _answer(self, text: str, request: ChatRequest) -> tuple[str, list[ToolCall]]:
        tools = {tool.name: tool for tool in request.tools}
        words = _normalise(text)
        if not words:
            return "Sorry, I didn't catch that.", []
        for pattern in DTMF_PATTERNS:
            if found := pattern.search(text):
                pressed = found.group(1).upper()
                # Keys are the one input recognition cannot garble: 9 ends the call, 0 asks for
                # a person (an operator), as on many phone menus.
                if pressed == "9" and END_CALL in tools:
                    return "You pressed nine. Goodbye.", [
                        _call(END_CALL, {"reason": "caller pressed 9"})
                    ]
                if pressed == "0" and TRANSFER_CALL in tools:
                    return _transfer(tools[TRANSFER_CALL], "caller pressed 0")
                keys = " ".join(KEY_NAMES.get(key, key) for key in pressed)
                return f"You pressed {keys}.", []
        if OPT_OUT in tools and phrase_said(text, DEFAULT_OPT_OUT_PHRASES):
            # Nothing to say: the session speaks the assistant's confirmation.
            return "", [_call(OPT_OUT, {"reason": "caller asked not to be called again"})]
        if END_CALL in tools and _matches(words, GOODBYE_STEMS, GOODBYE_PHRASES):
            return "Goodbye, thanks for calling.", [
                _call(END_CALL, {"reason": "caller said goodbye"})
            ]
        if TRANSFER_CALL in tools and _matches(words, TRANSFER_STEMS, TRANSFER_PHRASES):
            return _transfer(tools[TRANSFER_CALL], "caller asked for a person")
        slots = _offered_slots(request.messages)
        if BOOK_MEETING in tools and slots and _matches(words, BOOK_STEMS, BOOK_PHRASES):
            arguments = self._fill(tools[BOOK_MEETING], text, slot=slots[0])
            return f"I'll book {_spoken_time(slots[0])} for you.", [_call(BOOK_MEETING, arguments)]
        if CHECK_AVAILABILITY in tools and _matches(
            words, AVAILABILITY_STEMS, AVAILABILITY_PHRASES
        ):
            arguments = self._fill(tools[CHECK_AVAILABILITY], text)
            return "Let me check the availability for tomorrow.", [
                _call(CHECK_AVAILABILITY, arguments)
            ]
        webhook = _webhook_for(words, [t for t in request.tools if t.name not in BUILT_IN])
        if webhook is not None:
            arguments = self._fill(webhook, text)
            return f"Let me check that with the {_human(webhook.name)} tool.", [
                _call(webhook.name, arguments)
            ]
        return _echo(text, request.tools), []

    # ------------------------------------------------------------------ arguments
    def _fill(self, tool: ToolSpec, text: str, slot: str | None = None) -> dict[str, Any]:
        """Arguments for `tool`: the properties this script knows how to fill (dates, the
        offered slot, name, email) plus every required one, from its JSON schema."""
        required = tool.parameters.get("required") or []
        arguments: dict[str, Any] = {}
        for name, schema in _properties(tool).items():
            known = self._known_value(name, slot)
            if known is not None:
                arguments[name] = known
            elif name in required:
                arguments[name] = self._generic(name, schema, text)
        return arguments

    def _known_value(self, name: str, slot: str | None) -> str | None:
        key = name.lower()
        parts = set(re.split(r"[_\-]+", key))
        if slot is not None and parts & {"start", "time", "slot", "datetime", "when"}:
            return slot
        if parts & {"date", "day", "when"}:
            return (self._today() + timedelta(days=1)).isoformat()
        if "email" in parts:
            return "caller@example.com"
        if key in ("name", "full_name", "attendee_name", "caller_name"):
            return "Local Caller"
        return None

    def _generic(self, name: str, schema: Any, text: str) -> Any:
        schema = schema if isinstance(schema, dict) else {}
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind in ("integer", "number"):
            return 1
        if kind == "boolean":
            return True
        if kind == "array":
            return []
        if kind == "object":
            properties = schema.get("properties") or {}
            return {
                key: self._generic(key, value, text)
                for key, value in properties.items()
                if key in (schema.get("required") or [])
            }
        key = name.lower()
        parts = set(re.split(r"[_\-]+", key))
        if "phone" in parts:
            return "+15555550100"
        digits = re.findall(r"\d+", text)
        if digits and (parts & {"id", "number", "no", "code", "zip", "ref"} or key.endswith("id")):
            return "".join(digits)
        return text.strip() or "local test"


# --------------------------------------------------------------------------- helpers
def _labelled(messages: Iterable[ChatMessage]) -> bool:
    return any(m.role == "assistant" and LABEL_MARK in m.text.lower() for m in messages)


def _word_groups(text: str) -> list[str]:
    pieces = re.findall(r"\S+\s*", text)
    return [
        "".join(pieces[i : i + WORDS_PER_DELTA]) for i in range(0, len(pieces), WORDS_PER_DELTA)
    ]


def _normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9\s]", " ", text.lower().replace("'", "")).split()


def _matches(words: list[str], stems: Iterable[str], phrases: Iterable[str] = ()) -> bool:
    joined = f" {' '.join(words)} "
    return any(word.startswith(stem) for word in words for stem in stems) or any(
        f" {phrase} " in joined for phrase in phrases
    )


def _call(name: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(id=f"dev_{uuid.uuid4().hex[:16]}", name=name, arguments=arguments)


def _properties(tool: ToolSpec) -> dict[str, Any]:
    properties = tool.parameters.get("properties")
    return properties if isinstance(properties, dict) else {}


def _human(name: str) -> str:
    return " ".join(re.split(r"[_\-\s]+", name)).strip()


def _stem(word: str) -> str:
    """A rough English stem, enough for "deliveries" to meet "delivery"."""
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + replacement
    return word


def _content_stems(words: Iterable[str]) -> set[str]:
    return {_stem(word) for word in words if len(word) >= 4 and word not in STOPWORDS}


def _tool_words(tool: ToolSpec) -> set[str]:
    return _content_stems(re.findall(r"[a-z]+", f"{_human(tool.name)} {tool.description}".lower()))


def _webhook_for(words: list[str], tools: list[ToolSpec]) -> ToolSpec | None:
    """The tool sharing the most words with the text (a plural or suffix still matches)."""
    spoken = _content_stems(words)
    best, best_score = None, 0
    for tool in tools:
        score = sum(
            1
            for word in _tool_words(tool)
            if any(s.startswith(word) or word.startswith(s) for s in spoken)
        )
        if score > best_score:
            best, best_score = tool, score
    return best


def _echo(text: str, tools: tuple[ToolSpec, ...]) -> str:
    heard = " ".join(text.split()[:MAX_ECHO_WORDS]).rstrip(".!?,;: ")
    offers = []
    names = {tool.name for tool in tools}
    if CHECK_AVAILABILITY in names:
        offers.append("check availability")
    offers.extend(_human(t.name) for t in tools if t.name not in BUILT_IN)
    if TRANSFER_CALL in names:
        offers.append("transfer you")
    if END_CALL in names:
        offers.append("end the call")
    if offers:
        shown = offers[:4]
        listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
        return f"I heard you say: {heard}. I can {listed}."
    return f"I heard you say: {heard}. I only repeat what I hear."


# --------------------------------------------------------------------------- tool results
def _results_sentence(messages: tuple[ChatMessage, ...]) -> str:
    """One sentence per tool result at the end of the conversation."""
    results: list[ChatMessage] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.insert(0, message)
    return " ".join(_result_sentence(m.name or "last", m.text) for m in results)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_of(result: Any) -> str | None:
    if isinstance(result, dict):
        error = result.get("error")
        if isinstance(error, dict):
            error = error.get("message") or json.dumps(error)
        if error:
            return str(error)
        if result.get("ok") is False:
            return "it did not succeed"
    if isinstance(result, str) and result.strip().lower().startswith("error"):
        return result.strip()[5:].lstrip(" :") or "an error"
    return None


def _result_sentence(name: str, text: str) -> str:
    result = _parse(text)
    error = _error_of(result)
    if error is not None:
        return f"Sorry, the {_human(name)} tool failed: {_limit(error.rstrip('.'))}."
    if name == CHECK_AVAILABILITY:
        slots = _slots(result)
        if not slots:
            return "There are no free times then; we could try another day."
        spoken = [_spoken_time(slot) for slot in slots[:SLOTS_READ]]
        listed = spoken[0] if len(spoken) == 1 else f"{', '.join(spoken[:-1])} or {spoken[-1]}"
        return f"I have {listed}. Shall I book the first one?"
    if name == BOOK_MEETING and isinstance(result, dict):
        start = result.get("start") or result.get("start_time") or result.get("time")
        if start:
            return f"You're booked for {_spoken_time(str(start))}."
        return "Your meeting is booked."
    if name in (END_CALL, TRANSFER_CALL):
        return "Done."
    return f"The {_human(name)} tool answered: {_limit(_compact(result))}."


def _slots(result: Any) -> list[str]:
    if not isinstance(result, dict):
        return []
    listed = next((result[k] for k in ("slots", "available_slots", "times") if k in result), None)
    slots = []
    for slot in listed if isinstance(listed, list) else []:
        if isinstance(slot, dict):
            slot = slot.get("start") or slot.get("start_time") or slot.get("time")
        if isinstance(slot, str) and slot:
            slots.append(slot)
    return slots


def _offered_slots(messages: tuple[ChatMessage, ...]) -> list[str]:
    """Slots of the last availability result, unless a booking succeeded since."""
    for message in reversed(messages):
        if message.role != "tool":
            continue
        if message.name == BOOK_MEETING and _error_of(_parse(message.text)) is None:
            return []
        if message.name == CHECK_AVAILABILITY:
            return _slots(_parse(message.text))
    return []


def _spoken_time(value: str) -> str:
    """An ISO time as spoken ("Tuesday at 9:30 AM"); anything else as it is."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    hour = moment.hour % 12 or 12
    return f"{WEEKDAYS[moment.weekday()]} at {hour}:{moment.minute:02d} " + (
        "AM" if moment.hour < 12 else "PM"
    )


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{_human(str(k))} {_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_compact(item) for item in value[:5]) if value else "nothing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    return str(value).strip()


def _limit(text: str, words: int = MAX_RESULT_WORDS) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def _transfer(tool: ToolSpec, reason: str) -> tuple[str, list[ToolCall]]:
    """A transfer to the first destination the tool offers."""
    arguments: dict[str, Any] = {}
    destination = _properties(tool).get("destination")
    choices = destination.get("enum") if isinstance(destination, dict) else None
    if isinstance(choices, list) and choices:
        arguments["destination"] = choices[0]
    arguments["reason"] = reason
    who = arguments.get("destination") or "a person"
    return f"Let me transfer you to {who}.", [_call(TRANSFER_CALL, arguments)]
