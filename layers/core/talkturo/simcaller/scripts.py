"""Scripts for simulated callers and callees: what a party on the simulated network does.

A script is YAML or JSON (docs/carrier.md, "Scripts"):

    behaviour: human          # callees only: human | no_answer | busy | failed | voicemail
    voice: en-us              # the text-to-speech voice of the lines (espeak-ng voice name)
    tts: espeak-ng            # optional: piper | espeak-ng | synthetic (default: the simulator's)
    greeting: "Hi, this is Sam. Leave a message."   # voicemail: spoken, then a beep
    max_seconds: 300          # stays on the line at most this long, then hangs up
    steps:
      - wait_for_silence: 0.8             # the other side spoke, then was silent this long
      - say: "Hello, I'd like to book a table."
      - wait_seconds: 2
      - press: "1#"                        # DTMF keys
      - interrupt: "Sorry, one more thing"  # talk over the other side's audio
      - converse: 5                          # lines written at run time (see `Converse`)
      - hang_up

Steps run while the call is connected to a media stream (`<Connect><Stream>`); a script that
ends without `hang_up` stays on the line, silent, until the other side ends the call (or
`max_seconds` pass). Times are simulated seconds (the simulator's time scale applies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DTMF_KEYS = frozenset("0123456789*#ABCDabcdw")
MAX_LINE_CHARS = 2000
MAX_STEPS = 500


class ScriptError(ValueError):
    """A script that does not follow the format; the message says where and why."""


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Say(_Step):
    kind: Literal["say"] = "say"
    text: Annotated[str, Field(min_length=1, max_length=MAX_LINE_CHARS)]


class Interrupt(_Step):
    """Wait until the other side's audio is playing, then speak over it."""

    kind: Literal["interrupt"] = "interrupt"
    text: Annotated[str, Field(min_length=1, max_length=MAX_LINE_CHARS)]
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0


class Press(_Step):
    kind: Literal["press"] = "press"
    digits: Annotated[str, Field(min_length=1, max_length=64)]

    @field_validator("digits")
    @classmethod
    def _keys(cls, value: str) -> str:
        bad = sorted(set(value) - DTMF_KEYS)
        if bad:
            raise ValueError(f"not DTMF keys: {''.join(bad)!r} (use 0-9, *, #, A-D, w = pause)")
        return value


class WaitForSilence(_Step):
    """Wait until the other side has spoken and then been silent for `seconds`.

    When nothing is heard within `timeout`, the step ends anyway.
    """

    kind: Literal["wait_for_silence"] = "wait_for_silence"
    seconds: Annotated[float, Field(gt=0, le=60)] = 0.8
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0


class WaitSeconds(_Step):
    kind: Literal["wait_seconds"] = "wait_seconds"
    seconds: Annotated[float, Field(ge=0, le=3600)]


class Converse(_Step):
    """Up to `max_turns` times: wait as `wait_for_silence` does, then say the line the party's
    `next_line` callback writes from what was heard since the party last spoke (None: hang up;
    a `LastLine`: said, and the step is over).

    Only a party given a callback converses (a test run's persona caller); without one the step
    does nothing."""

    kind: Literal["converse"] = "converse"
    max_turns: Annotated[int, Field(ge=1, le=50)] = 10
    seconds: Annotated[float, Field(gt=0, le=60)] = 1.2
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0


class LastLine(str):
    """A `next_line` answer said as the party's last written line: the `converse` step ends
    after it (the script's next steps run), nothing more is transcribed."""

    __slots__ = ()


class HangUp(_Step):
    kind: Literal["hang_up"] = "hang_up"


Step = Say | Interrupt | Press | WaitForSilence | WaitSeconds | Converse | HangUp
_BY_KIND: dict[str, type[_Step]] = {
    "say": Say,
    "interrupt": Interrupt,
    "press": Press,
    "wait_for_silence": WaitForSilence,
    "wait_seconds": WaitSeconds,
    "converse": Converse,
    "hang_up": HangUp,
}
_SHORT_FIELD = {
    "say": "text",
    "interrupt": "text",
    "press": "digits",
    "wait_for_silence": "seconds",
    "wait_seconds": "seconds",
    "converse": "max_turns",
}


def _expand(raw: Any) -> dict[str, Any]:
    """`- say: "hi"`, `- hang_up`, `- wait_for_silence: {seconds: 1}` → {"kind": …, …}."""
    if isinstance(raw, str):
        raw = {raw: None}
    if not isinstance(raw, dict):
        raise ValueError('a step is a mapping with one key, e.g. `say: "Hello"`, or `hang_up`')
    if "kind" in raw:
        return raw
    if len(raw) != 1:
        raise ValueError(f"a step has exactly one key, not {sorted(raw)}")
    ((kind, value),) = raw.items()
    if kind not in _BY_KIND:
        raise ValueError(f"unknown step {kind!r}; steps are {', '.join(_BY_KIND)}")
    if isinstance(value, dict):
        return {"kind": kind, **value}
    if value is None or value is True:
        return {"kind": kind}
    short = _SHORT_FIELD.get(kind)
    if short is None:
        raise ValueError(f"{kind} takes no value")
    if short == "digits" and isinstance(value, int):
        value = str(value)
    return {"kind": kind, short: value}


class Script(BaseModel):
    """A simulated party: how it answers (callees) and what it does once connected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(max_length=200)] | None = None
    behaviour: Literal["human", "no_answer", "busy", "failed", "voicemail"] = "human"
    voice: Annotated[str, Field(pattern=r"^[A-Za-z0-9_+\-]{1,40}$")] = "en-us"
    # Which engine speaks the lines; None: the simulator's own choice (Piper when installed).
    tts: Literal["auto", "piper", "espeak-ng", "synthetic"] | None = None
    greeting: Annotated[str, Field(min_length=1, max_length=MAX_LINE_CHARS)] | None = None
    ring_seconds: Annotated[float, Field(ge=0, le=600)] = 2.0
    max_seconds: Annotated[float, Field(gt=0, le=14400)] = 300.0
    steps: Annotated[list[Step], Field(max_length=MAX_STEPS)] = Field(default_factory=list)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("steps is a list")
        expanded = []
        for index, raw in enumerate(value):
            try:
                step = _expand(raw)
                expanded.append(_BY_KIND[step["kind"]].model_validate(step))
            except (ValueError, KeyError, ValidationError) as exc:
                raise ValueError(f"step {index + 1}: {_first_error(exc)}") from None
        return expanded

    @model_validator(mode="after")
    def _greeting_only_for_voicemail(self) -> Script:
        if self.greeting is not None and self.behaviour != "voicemail":
            raise ValueError("a greeting is for behaviour: voicemail")
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)


def parse_script(data: Any) -> Script:
    """A script from already-parsed data (a mapping, or a bare list of steps)."""
    if isinstance(data, list):
        data = {"steps": data}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScriptError("a script is a mapping (behaviour, voice, steps …) or a list of steps")
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            messages.append(f"{where}: {message}" if where else message)
        raise ScriptError("invalid script: " + "; ".join(messages)) from None


def load_script(text: str) -> Script:
    """A script from YAML or JSON text (JSON is YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptError(f"the script is not valid YAML/JSON: {exc}") from None
    return parse_script(data)


def read_script(path: str | Path) -> Script:
    return load_script(Path(path).read_text(encoding="utf-8"))


# A caller with no script: listens to the greeting, says hello, listens, hangs up.
DEFAULT_CALLER = parse_script(
    {
        "name": "default caller",
        "steps": [
            {"wait_for_silence": {"seconds": 1.0, "timeout": 15}},
            {"say": "Hello, can you hear me?"},
            {"wait_for_silence": {"seconds": 1.0, "timeout": 15}},
            "hang_up",
        ],
    }
)


# A callee with no script: answers "Hello?", then listens until the other side ends the call.
DEFAULT_CALLEE = parse_script({"name": "default callee", "steps": [{"say": "Hello?"}]})

# What a voicemail box says when its script has no greeting.
DEFAULT_GREETING = "Hi, you have reached my voicemail. Please leave a message after the tone."


def dumps(script: Script) -> str:
    return json.dumps(script.as_dict())
