"""Test suites: the format, and each expectation's verdict on an observed call, pass and fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from talkturo.domain.analysis import AnalysisResult, Evidence, ExtractedValue, SuccessEvaluation
from talkturo.domain.calls import TranscriptMessage, TranscriptToolCall
from talkturo.domain.test_runs import (
    LastLine,
    Persona,
    PersonaTurns,
    Scenario,
    SuiteError,
    TestRun,
    evaluate,
    load_suite,
    matches,
    persona_prompt,
    persona_script,
    run_status,
    value_matches,
)


@dataclass
class Observation:
    transcript: list[TranscriptMessage]
    ended_reason: str | None = "assistant_ended"
    turn_latencies_ms: list[int] = field(default_factory=list)


def _msg(role: str, text: str, start: int, end: int, **extra: Any) -> TranscriptMessage:
    return TranscriptMessage(role=role, text=text, start_ms=start, end_ms=end, **extra)  # type: ignore[arg-type]


CALL = [
    _msg("assistant", "Hi, I'm an AI assistant for Acme Dental.", 0, 2000),
    _msg("user", "I'd like to book a cleaning on Friday.", 2500, 4000),
    _msg(
        "assistant",
        "",
        4300,
        4300,
        tool_calls=[
            TranscriptToolCall(
                id="t1", name="book_meeting", arguments={"day": "Friday", "slots": 1}
            )
        ],
    ),
    _msg("tool", '{"ok": true}', 4400, 4400, tool_call_id="t1", name="book_meeting"),
    _msg("assistant", "You're booked for Friday at 10.", 5200, 6500),
    _msg("user", "My email is jane@example.com", 7000, 8000),
    _msg("assistant", "Thanks, goodbye!", 8900, 9500),
]


def _scenario(**expect: Any) -> Scenario:
    return Scenario.model_validate({"name": "s", "caller": [{"say": "hi"}], "expect": expect})


def _one(expect: dict[str, Any], analysis: AnalysisResult | None = None, **obs: Any) -> Any:
    (result,) = evaluate(_scenario(**expect), Observation(CALL, **obs), analysis)
    return result


def _analysis(*, passed: bool | None = True, value: Any = "jane@example.com") -> AnalysisResult:
    return AnalysisResult(
        summary="booked",
        language="en",
        success=SuccessEvaluation(rubric="pass_fail", passed=passed, reason="a booking was made"),
        extracted=[
            ExtractedValue(
                target="contact",
                key="email",
                value=value,
                status="accepted",
                evidence=Evidence(quote="jane@example.com", turn=5),
            )
        ],
        method="offline",
        prompt_hash="x",
    )


# ----------------------------------------------------------------------------- matching


def test_phrases_ignore_case_and_punctuation_and_regexes_search() -> None:
    assert matches("i'm an ai", "Hi, I'm  an AI assistant.")
    assert not matches("an ai", "a nail")  # words, not characters
    assert matches("/booked for (mon|fri)day/", "You're BOOKED for Friday")
    assert not matches("/\\bprice\\b/", "priceless")


def test_values_match_strings_loosely_and_mappings_as_subsets() -> None:
    assert value_matches({"day": "friday"}, {"day": "Friday", "slots": 1})
    assert not value_matches({"day": "monday"}, {"day": "Friday"})
    assert value_matches({"day": "/fri/"}, {"day": "Friday"})
    assert not value_matches(1, True)  # a boolean is not a number
    assert value_matches([1, "a"], [1, "A"])


# ----------------------------------------------------------------------------- each kind


def test_tools_called_passes_on_matching_arguments_with_the_deciding_line() -> None:
    result = _one({"tools_called": [{"name": "book_meeting", "arguments": {"day": "/fri/"}}]})
    assert result.passed and result.lines[0].index == 2
    assert "book_meeting" in result.lines[0].text


def test_tools_called_fails_on_other_arguments_and_on_no_call() -> None:
    wrong = _one({"tools_called": [{"name": "book_meeting", "arguments": {"day": "Monday"}}]})
    assert not wrong.passed and wrong.actual == [{"day": "Friday", "slots": 1}]
    assert "never with matching arguments" in wrong.detail
    missing = _one({"tools_called": [{"name": "transfer_call"}]})
    assert not missing.passed and missing.lines == []


def test_tools_not_called_pass_and_fail() -> None:
    assert _one({"tools_not_called": ["transfer_call"]}).passed
    failed = _one({"tools_not_called": ["book_meeting"]})
    assert not failed.passed and [line.index for line in failed.lines] == [2]


def test_said_checks_only_the_assistants_lines() -> None:
    assert _one({"said": ["I'm an AI"]}).lines[0].index == 0
    # the caller said it, the assistant did not: what the assistant said is shown
    missed = _one({"said": ["jane@example.com"]})
    assert not missed.passed and [line.index for line in missed.lines] == [0, 4, 6]


def test_never_said_fails_with_the_lines_that_said_it() -> None:
    results = evaluate(_scenario(never_said=["/\\$\\d+/", "guarantee"]), Observation(CALL), None)
    assert [r.passed for r in results] == [True, True]
    failed = _one({"never_said": ["goodbye"]})
    assert not failed.passed and failed.lines[0].text == "Thanks, goodbye!"


def test_ended_reason_one_or_a_list() -> None:
    assert _one({"ended_reason": "assistant_ended"}).passed
    assert _one({"ended_reason": ["transferred", "assistant_ended"]}).passed
    failed = _one({"ended_reason": "transferred"}, ended_reason="caller_hung_up")
    assert not failed.passed and failed.actual == "caller_hung_up"


def test_max_turn_latency_names_the_slowest_reply() -> None:
    # from the transcript: 300 (tool call line has no text), 1200, 900 ms
    result = _one({"max_turn_latency_ms": 1500})
    assert result.passed and result.actual == 1200
    failed = _one({"max_turn_latency_ms": 1000})
    assert not failed.passed
    assert [line.index for line in failed.lines] == [1, 4]
    # the engine's measured latencies win over the transcript's
    assert not _one({"max_turn_latency_ms": 1500}, turn_latencies_ms=[400, 2100]).passed


def test_max_turn_latency_fails_when_nothing_was_answered() -> None:
    (result,) = evaluate(_scenario(max_turn_latency_ms=10), Observation([CALL[0]]), None)
    assert not result.passed and "never replied" in result.detail


def test_extracted_fields_pass_fail_and_without_analysis() -> None:
    passed = _one({"extracted_fields": {"contact.email": "JANE@example.com"}}, _analysis())
    assert passed.passed and passed.lines[0].index == 5
    failed = _one({"extracted_fields": {"email": "/@acme/"}}, _analysis())
    assert not failed.passed and "extracted" in failed.detail
    assert not _one({"extracted_fields": {"company.email": "x"}}, _analysis()).passed
    assert not _one({"extracted_fields": {"email": "x"}}, None).passed


def test_success_pass_fail_and_not_evaluated() -> None:
    assert _one({"success": True}, _analysis(passed=True)).passed
    assert not _one({"success": True}, _analysis(passed=False)).passed
    unknown = _one({"success": True}, _analysis(passed=None))
    assert not unknown.passed and unknown.detail.startswith("not evaluated")


def test_every_expectation_is_checked_in_order() -> None:
    scenario = _scenario(said=["booked"], never_said=["price"], ended_reason="assistant_ended")
    kinds = [r.kind for r in evaluate(scenario, Observation(CALL), None)]
    assert kinds == ["said", "never_said", "ended_reason"]


# ----------------------------------------------------------------------------- the format


SUITE = """
name: booking
scenarios:
  - name: books a cleaning
    caller:
      steps:
        - wait_for_silence: 1
        - say: "I'd like to book a cleaning"
        - hang_up
    expect:
      said: ["booked"]
  - name: persona
    persona: {goal: "book a cleaning", persona: "an impatient caller"}
"""


def test_a_suite_parses_with_scripts_and_personas() -> None:
    suite = load_suite(SUITE)
    assert [s.name for s in suite.scenarios] == ["books a cleaning", "persona"]
    assert suite.scenarios[0].script().steps[1].kind == "say"


TWICE = "  - {name: a, caller: [hang_up]}"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: x\nscenarios: []", "scenarios"),
        ("name: x\nscenarios:\n  - name: a\n", "give a caller"),
        ("name: x\nscenarios:\n  - name: a\n    caller: [{sing: la}]\n", "unknown step"),
        (
            "name: x\nscenarios:\n  - {name: a, caller: [hang_up], expect: {said: ['/(/']}}",
            "regular",
        ),
        ("name: x\nscenarios:\n  - {name: a, caller: [hang_up], expect: {sad: [x]}}", "sad"),
        ("[1, 2]", "a mapping"),
        ("name: x\nscenarios:\n" + TWICE + "\n" + TWICE, "two"),
    ],
)
def test_a_bad_suite_says_where(text: str, where: str) -> None:
    with pytest.raises(SuiteError, match=where):
        load_suite(text)


def test_more_than_fifty_scenarios_are_refused() -> None:
    scenarios = "".join(f"  - {{name: s{i}, caller: [hang_up]}}\n" for i in range(51))
    with pytest.raises(SuiteError, match="scenarios"):
        load_suite("name: x\nscenarios:\n" + scenarios)


def test_a_run_is_over_when_its_last_scenario_reports() -> None:
    run = TestRun.model_validate(
        {
            "id": "trun_1",
            "assistant_id": "asst_1",
            "suite_name": "s",
            "status": "running",
            "fingerprint": "f",
            "scenario_count": 3,
            "completed": 2,
            "passed": 2,
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
    assert run_status(run) == "running"
    assert run_status(run.model_copy(update={"completed": 3, "passed": 3})) == "passed"
    assert run_status(run.model_copy(update={"completed": 3, "failed": 1})) == "failed"
    assert run_status(run.model_copy(update={"completed": 3, "errored": 1})) == "error"


def test_a_persona_s_replies_are_cleaned_and_its_turns_end_at_the_marker() -> None:
    scenario = Scenario.model_validate(
        {"name": "p", "direction": "outbound", "persona": {"goal": "book", "max_turns": 5}}
    )
    assert scenario.persona is not None
    turns = PersonaTurns(scenario.persona)
    assert turns.hear("  ") and turns.messages == [("user", "(silence)")]
    assert turns.answer('Caller: "Hi, I need a cleaning."\n\nIs Friday possible?') == (
        "Hi, I need a cleaning. Is Friday possible?"
    )
    assert turns.hear("Friday at ten works.")
    # The line before the marker is the last: said, then no more turns
    last = turns.answer("Great, thanks, goodbye. [Hang up]")
    assert last == "Great, thanks, goodbye." and isinstance(last, LastLine)
    assert not turns.hear("Goodbye!")
    assert [role for role, _ in turns.messages] == ["user", "assistant"] * 2
    assert "[hang up]" in persona_prompt(scenario.persona)
    script = persona_script(scenario.name, scenario.persona)
    kinds = [step.kind for step in script.steps]
    assert kinds == ["converse", "wait_for_silence", "hang_up"]
    assert script.steps[0].max_turns == 5  # type: ignore[union-attr]


def test_a_persona_stops_at_max_turns_or_an_empty_reply() -> None:
    capped = PersonaTurns(Persona(goal="g", max_turns=2))
    for _ in range(2):
        assert capped.hear("Yes?") and capped.answer("More, please.") == "More, please."
    assert not capped.hear("Anything else?") and capped.lines == 2
    silent = PersonaTurns(Persona(goal="g"))
    assert silent.hear("Hello") and silent.answer(" \n ") is None
    assert not silent.hear("Hello?")


def test_a_tool_result_without_its_call_still_counts_as_called() -> None:
    result = _msg("tool", '{"ok": true}', 100, 100, tool_call_id="t9", name="transfer_call")
    (called,) = evaluate(
        _scenario(tools_called=[{"name": "transfer_call"}]), Observation([*CALL, result]), None
    )
    assert called.passed and called.lines[0].index == len(CALL)
    # a result whose call is shown counts once, with the call's arguments
    assert len(_one({"tools_not_called": ["book_meeting"]}).lines) == 1
