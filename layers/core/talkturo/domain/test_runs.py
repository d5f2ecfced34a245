"""Assistant test runs: suites of simulated-caller scenarios with expectations, and the verdict
of each expectation on what a test call did (docs/test-runs.md). Pure: no I/O.

A suite (YAML or JSON) names scenarios; each is a scripted caller (the carrier simulator's
script format, inline) or a persona that a language model plays, and what must (or must not)
happen on the call. `evaluate` checks a scenario's expectations against the observed call and
its post-call analysis, and keeps the transcript lines that decided each verdict.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from talkturo.domain.analysis import normalise_words
from talkturo.domain.common import Credits, Name, Resource
from talkturo.domain.simcaller import LastLine, ScriptError, parse_script

if TYPE_CHECKING:
    from talkturo.domain.analysis import AnalysisResult
    from talkturo.domain.assistants import AssistantConfig
    from talkturo.domain.calls import TranscriptMessage
    from talkturo.domain.simcaller import Script

MAX_SCENARIOS = 50
MAX_PATTERN_CHARS = 500
# A failed `said` shows what the assistant said instead, this many lines at most.
MAX_LINES_SHOWN = 8
Direction = Literal["inbound", "outbound"]
ExpectationKind = Literal[
    "tools_called",
    "tools_not_called",
    "said",
    "never_said",
    "ended_reason",
    "max_turn_latency_ms",
    "extracted_fields",
    "success",
]
RunStatus = Literal["queued", "running", "passed", "failed", "error"]
ScenarioStatus = Literal["queued", "running", "passed", "failed", "error"]
FINAL: frozenset[str] = frozenset({"passed", "failed", "error"})


class SuiteError(ValueError):
    """A suite file that does not follow the format; the message says where and why."""


# --------------------------------------------------------------------------- patterns


def is_regex(pattern: str) -> bool:
    return len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/")


def _check_pattern(pattern: str) -> str:
    if not pattern.strip():
        raise ValueError("a phrase or /regex/ must not be empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"at most {MAX_PATTERN_CHARS} characters")
    if is_regex(pattern):
        try:
            re.compile(pattern[1:-1])
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


def matches(pattern: str, text: str) -> bool:
    """A /regex/ searched in the text, or a phrase found among its words; case, punctuation and
    spacing do not count ("I'm an AI" matches "i'm  an AI.")."""
    if is_regex(pattern):
        return re.search(pattern[1:-1], text, re.IGNORECASE) is not None
    phrase = normalise_words(pattern)
    return bool(phrase) and f" {phrase} " in f" {normalise_words(text)} "


def value_matches(expected: Any, actual: Any) -> bool:
    """Expected values: strings compare case-insensitively (or as /regex/), mappings as a
    subset, lists item by item, anything else equal."""
    if isinstance(expected, str):
        if actual is None:
            return False
        text = actual if isinstance(actual, str) else json.dumps(actual)
        if is_regex(expected):
            return re.search(expected[1:-1], text, re.IGNORECASE) is not None
        return expected.strip().casefold() == text.strip().casefold()
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and value_matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(value_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def _patterns_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if is_regex(value) else []
    if isinstance(value, dict):
        return [p for item in value.values() for p in _patterns_in(item)]
    if isinstance(value, list):
        return [p for item in value for p in _patterns_in(item)]
    return []


Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)]


# --------------------------------------------------------------------------- the suite format


class ToolExpectation(Resource):
    name: str = Field(min_length=1, max_length=64, description="The tool's name as it is called.")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="A subset of the call's arguments; a string value may be a /regex/.",
    )

    @field_validator("arguments")
    @classmethod
    def _regexes(cls, value: dict[str, Any]) -> dict[str, Any]:
        for pattern in _patterns_in(value):
            _check_pattern(pattern)
        return value


class Expectations(Resource):
    """What must (or must not) happen on the call; every one given is checked."""

    tools_called: list[ToolExpectation] = Field(default_factory=list, max_length=20)
    tools_not_called: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    said: list[Pattern] = Field(
        default_factory=list,
        max_length=20,
        description="Phrases (or /regex/) the assistant must say, case-insensitive.",
    )
    never_said: list[Pattern] = Field(
        default_factory=list,
        max_length=20,
        description="Phrases (or /regex/) the assistant must never say, case-insensitive.",
    )
    ended_reason: str | list[str] | None = Field(
        default=None, description="The call's ended reason, or one of a list."
    )
    max_turn_latency_ms: int | None = Field(
        default=None, ge=1, le=600_000, description="No reply slower than this."
    )
    extracted_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Post-call extraction: `key` or `contact.key` / `company.key` → the value "
        "(strings case-insensitive or /regex/).",
    )
    success: bool | None = Field(default=None, description="The success evaluation's verdict.")

    @field_validator("said", "never_said")
    @classmethod
    def _phrases(cls, value: list[str]) -> list[str]:
        return [_check_pattern(p) for p in value]

    @field_validator("extracted_fields")
    @classmethod
    def _field_patterns(cls, value: dict[str, Any]) -> dict[str, Any]:
        for pattern in _patterns_in(value):
            _check_pattern(pattern)
        return value

    def reasons(self) -> list[str]:
        if self.ended_reason is None:
            return []
        return [self.ended_reason] if isinstance(self.ended_reason, str) else self.ended_reason

    def needs_analysis(self) -> bool:
        return bool(self.extracted_fields) or self.success is not None


class Persona(Resource):
    """A caller played by a language model: who it is and what it wants."""

    goal: str = Field(min_length=1, max_length=2000, description="What the caller wants done.")
    persona: str = Field(
        default="", max_length=4000, description="Who the caller is and how they talk."
    )
    max_turns: int = Field(default=10, ge=1, le=50, description="Caller lines at most.")


class Scenario(Resource):
    name: Name = Field(min_length=1, max_length=200)
    caller: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="A scripted caller in the carrier simulator's script format (steps: say, "
        "wait_for_silence, interrupt, press, hang_up …), or a bare list of steps.",
    )
    persona: Persona | None = Field(
        default=None, description="A caller a language model plays (needs a configured model)."
    )
    direction: Direction = "inbound"
    contact_id: str | None = Field(default=None, min_length=1, max_length=64)
    expect: Expectations = Field(default_factory=Expectations)

    @field_validator("caller")
    @classmethod
    def _script(cls, value: Any) -> Any:
        if value is not None:
            try:
                parse_script(value)
            except ScriptError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_caller(self) -> Scenario:
        if self.caller is not None and self.persona is not None:
            raise ValueError("give a caller or a persona, not both")
        if self.caller is None and self.persona is None:
            raise ValueError("give a caller (a script) or a persona")
        return self

    def script(self) -> Script:
        return parse_script(self.caller)


class SuiteBody(Resource):
    name: Name = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    scenarios: list[Scenario] = Field(min_length=1, max_length=MAX_SCENARIOS)

    @field_validator("scenarios")
    @classmethod
    def _unique_names(cls, value: list[Scenario]) -> list[Scenario]:
        seen: set[str] = set()
        for scenario in value:
            if scenario.name in seen:
                raise ValueError(f"two scenarios are named {scenario.name!r}")
            seen.add(scenario.name)
        return value


class TestSuiteCreate(SuiteBody):
    __test__ = False  # not a pytest class


class TestSuiteUpdate(Resource):
    __test__ = False  # not a pytest class
    name: Name | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    scenarios: list[Scenario] | None = Field(default=None, min_length=1, max_length=MAX_SCENARIOS)

    @field_validator("scenarios")
    @classmethod
    def _unique_names(cls, value: list[Scenario] | None) -> list[Scenario] | None:
        return None if value is None else SuiteBody._unique_names(value)


class TestSuite(SuiteBody):
    __test__ = False  # not a pytest class
    object: Literal["test_suite"] = "test_suite"
    id: str
    assistant_id: str
    created_at: datetime
    updated_at: datetime


class TestSuiteDeleted(BaseModel):
    __test__ = False  # not a pytest class
    object: Literal["test_suite"] = "test_suite"
    id: str
    deleted: Literal[True] = True


def _error_text(exc: ValidationError) -> str:
    messages = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        messages.append(f"{where}: {message}" if where else message)
    return "; ".join(messages)


def load_suite(text: str) -> SuiteBody:
    """A suite from YAML or JSON text; SuiteError says what is wrong and where."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"the suite is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError("a suite is a mapping with a name and scenarios")
    try:
        return SuiteBody.model_validate(data)
    except ValidationError as exc:
        raise SuiteError("invalid suite: " + _error_text(exc)) from None


# --------------------------------------------------------------------------- persona callers

PERSONA_HANG_UP = "[hang up]"
PERSONA_SYSTEM_PROMPT = """You are the caller on a phone call to a business's voice assistant, \
for a test. You are the caller, never the assistant.
Who you are: {persona}
What you want: {goal}
Each user message is what the assistant just said, transcribed from the call (it may have \
errors; "(silence)" when it said nothing). Answer with what you say next, as spoken: one or \
two short sentences, no names of speakers, no stage directions, no quotes. Pursue the goal; \
you have at most {max_turns} turns. When the goal is reached or cannot be, say goodbye and end \
that reply with {hang_up}"""

_LINE_NOISE = re.compile(r"^\s*(?:[-*•]|\d+[.)]|caller\s*:|me\s*:)\s*", re.IGNORECASE)


def persona_prompt(persona: Persona) -> str:
    return PERSONA_SYSTEM_PROMPT.format(
        persona=persona.persona or "an ordinary customer",
        goal=persona.goal,
        max_turns=persona.max_turns,
        hang_up=PERSONA_HANG_UP,
    )


class PersonaTurns:
    """A persona caller's conversation so far, as the model sees it: what the assistant said
    (user turns) and the caller's lines (assistant turns). Ends at the hang-up marker, an empty
    reply or `max_turns` lines."""

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.messages: list[tuple[Literal["user", "assistant"], str]] = []
        self.lines = 0
        self.done = False

    def hear(self, text: str) -> bool:
        """What the assistant said; False when the caller has nothing more to say."""
        if self.done or self.lines >= self.persona.max_turns:
            return False
        self.messages.append(("user", text.strip() or "(silence)"))
        return True

    def answer(self, reply: str) -> str | None:
        """The caller's line from the model's reply (None: hang up now); a line with the
        marker is the last (`LastLine`): said, then the caller listens once and hangs up."""
        marker = reply.lower().find(PERSONA_HANG_UP)
        if marker >= 0:
            self.done = True
            reply = reply[:marker]
        parts = (
            _LINE_NOISE.sub("", raw).strip().strip('"\u201c\u201d').strip()
            for raw in reply.splitlines()
        )
        line = " ".join(part for part in parts if part)[:2000]
        if not line:
            self.done = True
            return None
        self.lines += 1
        self.messages.append(("assistant", line))
        return LastLine(line) if self.done else line


def persona_script(name: str, persona: Persona) -> Script:
    """The caller script of a persona: its lines written turn by turn (`converse`), then a last
    listen (to the answer to its last line) and the hang-up."""
    steps: list[Any] = [
        {"converse": {"max_turns": persona.max_turns, "seconds": 1.2, "timeout": 30}},
        {"wait_for_silence": {"seconds": 1.2, "timeout": 30}},
        "hang_up",
    ]
    return parse_script({"name": name, "max_seconds": 600, "steps": steps})


# --------------------------------------------------------------------------- runs


class TestRunCreate(Resource):
    __test__ = False  # not a pytest class
    suite_id: str | None = Field(default=None, min_length=1, max_length=64)
    suite: SuiteBody | None = Field(default=None, description="An inline suite, not stored.")

    @model_validator(mode="after")
    def _one_suite(self) -> TestRunCreate:
        if (self.suite_id is None) == (self.suite is None):
            raise ValueError("give exactly one of suite_id and suite")
        return self


class TranscriptLine(BaseModel):
    """A transcript message that decided a verdict (its index in the call's transcript)."""

    index: int
    role: str
    text: str
    start_ms: int


class ExpectationResult(BaseModel):
    kind: ExpectationKind
    passed: bool
    expected: Any = None
    actual: Any = None
    detail: str = Field(default="", description="Why, in one line.")
    lines: list[TranscriptLine] = Field(default_factory=list)


class ScenarioResult(BaseModel):
    name: str
    index: int = Field(description="The scenario's place in the suite, from 0.")
    status: ScenarioStatus
    call_id: str | None = Field(
        default=None, description="GET /v1/calls/{id} (transcript, recording) has the call."
    )
    expectations: list[ExpectationResult] = Field(default_factory=list)
    ended_reason: str | None = None
    transferred_to: str | None = None
    duration_seconds: int = 0
    billed_seconds: int = 0
    turn_latencies_ms: list[int] = Field(default_factory=list)
    recording_available: bool = False
    credits_charged: Credits = Field(
        default=Decimal(0), description="Its test minutes beyond the daily free allowance."
    )
    error: str | None = None


class TestRun(BaseModel):
    __test__ = False  # not a pytest class
    object: Literal["test_run"] = "test_run"
    id: str
    assistant_id: str
    suite_id: str | None = None
    suite_name: str
    status: RunStatus
    fingerprint: str = Field(
        description="The assistant's configuration the run tested (a hash of what changes its "
        "behaviour); a campaign's `require_passing_tests` compares it."
    )
    scenario_count: int
    completed: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    results: list[ScenarioResult] = Field(default_factory=list)
    test_seconds: int = Field(default=0, description="Billed test seconds of every scenario.")
    credits_charged: Credits = Field(
        default=Decimal(0), description="Test minutes beyond the daily free allowance, in credits."
    )
    created_at: datetime
    completed_at: datetime | None = None


class ScenarioJob(BaseModel):
    """One queue message: one scenario of one run."""

    account_id: str
    assistant_id: str
    run_id: str
    index: int


def run_status(run: TestRun) -> RunStatus:
    """A run is over when every scenario has reported: error beats failed beats passed."""
    if run.completed < run.scenario_count:
        return "running" if run.completed or run.status == "running" else run.status
    if run.errored:
        return "error"
    return "failed" if run.failed else "passed"


# Fields that do not change how the assistant behaves on a call.
_NOT_BEHAVIOUR = frozenset({"name", "description"})


def fingerprint(config: AssistantConfig) -> str:
    """A stable hash of the assistant's behaviour: prompt, models, voice, tools, telephony …"""
    from talkturo.domain.assistants import AssistantConfig

    # Only the configuration: a record's ids, links and timestamps change nothing on a call.
    fields = set(AssistantConfig.model_fields) - _NOT_BEHAVIOUR
    data = config.model_dump(mode="json", include=fields)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- evaluation


class Observed(Protocol):
    """What a test call observed (the test-call engine's observation satisfies it)."""

    @property
    def transcript(self) -> Sequence[TranscriptMessage]: ...

    @property
    def ended_reason(self) -> str | None: ...

    @property
    def turn_latencies_ms(self) -> Sequence[int]: ...


def _line(index: int, message: TranscriptMessage) -> TranscriptLine:
    text = message.text
    if message.tool_calls:
        calls = ", ".join(
            f"{call.name}({json.dumps(call.arguments, sort_keys=True)})"
            for call in message.tool_calls
        )
        text = f"{text} → {calls}" if text else calls
    return TranscriptLine(index=index, role=message.role, text=text, start_ms=message.start_ms)


def _tool_calls(messages: Sequence[TranscriptMessage]) -> list[tuple[int, str, dict[str, Any]]]:
    """(line, tool, arguments) of every tool call: the assistant's calls, and the results of
    calls the transcript does not show being made (arguments unknown)."""
    found = []
    made: set[str] = set()
    for index, message in enumerate(messages):
        for call in message.tool_calls or []:
            found.append((index, call.name, dict(call.arguments)))
            made.add(call.id)
    for index, message in enumerate(messages):
        if message.role == "tool" and message.name and message.tool_call_id not in made:
            found.append((index, message.name, {}))
    return sorted(found, key=lambda item: item[0])


def _check_tool_called(
    want: ToolExpectation, messages: Sequence[TranscriptMessage]
) -> ExpectationResult:
    named = [(i, args) for i, name, args in _tool_calls(messages) if name == want.name]
    hit = next((i for i, args in named if value_matches(want.arguments, args)), None)
    expected = want.model_dump()
    if hit is not None:
        return ExpectationResult(
            kind="tools_called",
            passed=True,
            expected=expected,
            actual=next(args for i, args in named if i == hit),
            detail=f"{want.name} was called"
            + (" with matching arguments" if want.arguments else ""),
            lines=[_line(hit, messages[hit])],
        )
    detail = (
        f"{want.name} was called {len(named)} time(s), never with matching arguments"
        if named
        else f"{want.name} was never called"
    )
    return ExpectationResult(
        kind="tools_called",
        passed=False,
        expected=expected,
        actual=[args for _, args in named],
        detail=detail,
        lines=[_line(i, messages[i]) for i, _ in named],
    )


def _check_tool_not_called(name: str, messages: Sequence[TranscriptMessage]) -> ExpectationResult:
    named = [(i, args) for i, called, args in _tool_calls(messages) if called == name]
    return ExpectationResult(
        kind="tools_not_called",
        passed=not named,
        expected=name,
        actual=[args for _, args in named],
        detail=f"{name} was called {len(named)} time(s)" if named else f"{name} was not called",
        lines=[_line(i, messages[i]) for i, _ in named],
    )


def _assistant_lines(messages: Sequence[TranscriptMessage]) -> list[tuple[int, TranscriptMessage]]:
    return [(i, m) for i, m in enumerate(messages) if m.role == "assistant" and m.text.strip()]


def _check_said(
    pattern: str, messages: Sequence[TranscriptMessage], *, never: bool
) -> ExpectationResult:
    spoken = _assistant_lines(messages)
    hits = [(i, m) for i, m in spoken if matches(pattern, m.text)]
    kind: ExpectationKind = "never_said" if never else "said"
    shown = hits
    if never:
        detail = f"said {len(hits)} time(s)" if hits else "never said"
    elif hits:
        detail = "said"
    else:
        # Nothing matched: what the assistant did say decided it.
        detail = "the assistant never said it; it said:" if spoken else "the assistant said nothing"
        shown = spoken[:MAX_LINES_SHOWN]
    return ExpectationResult(
        kind=kind,
        passed=not hits if never else bool(hits),
        expected=pattern,
        actual=len(hits),
        detail=detail,
        lines=[_line(i, m) for i, m in shown],
    )


def _check_ended(reasons: list[str], observed: Observed) -> ExpectationResult:
    actual = observed.ended_reason
    messages = list(observed.transcript)
    last = [_line(len(messages) - 1, messages[-1])] if messages else []
    passed = actual in reasons
    return ExpectationResult(
        kind="ended_reason",
        passed=passed,
        expected=reasons[0] if len(reasons) == 1 else reasons,
        actual=actual,
        detail=f"ended {actual or 'with no reason'}"
        + ("" if passed else f", expected {' or '.join(reasons)}"),
        lines=last,
    )


def _replies(messages: Sequence[TranscriptMessage]) -> list[tuple[int, int, int]]:
    """(latency ms, caller line index, reply index) of each assistant reply to the caller."""
    pairs = []
    waiting: int | None = None
    for index, message in enumerate(messages):
        if message.role == "user" and message.text.strip():
            waiting = index
        elif message.role == "assistant" and message.text.strip() and waiting is not None:
            latency = max(0, message.start_ms - messages[waiting].end_ms)
            pairs.append((latency, waiting, index))
            waiting = None
    return pairs


def _check_latency(limit: int, observed: Observed) -> ExpectationResult:
    messages = list(observed.transcript)
    pairs = _replies(messages)
    measured = list(observed.turn_latencies_ms) or [p[0] for p in pairs]
    if not measured:
        return ExpectationResult(
            kind="max_turn_latency_ms",
            passed=False,
            expected=limit,
            actual=None,
            detail="the assistant never replied to the caller: no latency to check",
        )
    worst = max(measured)
    lines = []
    if pairs:
        _, asked, reply = max(pairs)
        lines = [_line(asked, messages[asked]), _line(reply, messages[reply])]
    return ExpectationResult(
        kind="max_turn_latency_ms",
        passed=worst <= limit,
        expected=limit,
        actual=worst,
        detail=f"slowest reply {worst} ms over {len(measured)} turn(s)",
        lines=lines,
    )


def _check_field(
    key: str, expected: Any, analysis: AnalysisResult | None, messages: Sequence[TranscriptMessage]
) -> ExpectationResult:
    if analysis is None:
        return ExpectationResult(
            kind="extracted_fields",
            passed=False,
            expected={key: expected},
            detail="no post-call analysis for the call",
        )
    target, _, bare = key.rpartition(".")
    found = [
        item
        for item in analysis.extracted
        if item.key == bare and (not target or item.target == target)
    ]
    accepted = [item for item in found if item.status == "accepted"]
    hit = next((item for item in accepted if value_matches(expected, item.value)), None)
    shown = hit or (accepted[0] if accepted else (found[0] if found else None))
    lines = []
    if shown is not None and shown.evidence is not None and shown.evidence.turn is not None:
        turn = shown.evidence.turn
        if 0 <= turn < len(messages):
            lines = [_line(turn, messages[turn])]
    if shown is None:
        detail = "the analysis has no such field"
    elif hit is not None:
        detail = "extracted as expected"
    elif accepted:
        detail = f"extracted {accepted[0].value!r}"
    else:
        detail = f"{shown.status}: {shown.reason or 'no value'}"
    return ExpectationResult(
        kind="extracted_fields",
        passed=hit is not None,
        expected={key: expected},
        actual={key: shown.value if shown is not None else None},
        detail=detail,
        lines=lines,
    )


def _check_success(expected: bool, analysis: AnalysisResult | None) -> ExpectationResult:
    if analysis is None:
        return ExpectationResult(
            kind="success",
            passed=False,
            expected=expected,
            detail="no post-call analysis for the call",
        )
    verdict = analysis.success.passed
    return ExpectationResult(
        kind="success",
        passed=verdict is expected,
        expected=expected,
        actual=verdict,
        detail=analysis.success.reason
        if verdict is not None
        else f"not evaluated: {analysis.success.reason}",
    )


def evaluate(
    scenario: Scenario, observed: Observed, analysis: AnalysisResult | None
) -> list[ExpectationResult]:
    """Every expectation of the scenario, in the order of the format, checked on the call."""
    expect = scenario.expect
    messages = list(observed.transcript)
    results = [_check_tool_called(want, messages) for want in expect.tools_called]
    results += [_check_tool_not_called(name, messages) for name in expect.tools_not_called]
    results += [_check_said(p, messages, never=False) for p in expect.said]
    results += [_check_said(p, messages, never=True) for p in expect.never_said]
    if expect.ended_reason is not None:
        results.append(_check_ended(expect.reasons(), observed))
    if expect.max_turn_latency_ms is not None:
        results.append(_check_latency(expect.max_turn_latency_ms, observed))
    results += [
        _check_field(key, value, analysis, messages)
        for key, value in expect.extracted_fields.items()
    ]
    if expect.success is not None:
        results.append(_check_success(expect.success, analysis))
    return results
