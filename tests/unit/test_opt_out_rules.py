"""The opt-out's phrases (whole words, case and punctuation ignored), its configuration on the
assistant, and the function name it reserves."""

from __future__ import annotations

from typing import Any

import pytest

from talkturo.domain.assistant_templates import get_templates
from talkturo.domain.assistant_tools import (
    DEFAULT_OPT_OUT_CONFIRMATION,
    DEFAULT_OPT_OUT_PHRASES,
    phrase_said,
)
from talkturo.domain.assistants import (
    DEFAULT_AI_DISCLOSURE,
    AssistantConfig,
    config_for_create,
    config_for_update,
)
from talkturo.domain.catalog import get_catalog
from talkturo.errors import InvalidRequest
from talkturo.voice.toolbox import tool_specs


def _create(**changes: Any) -> AssistantConfig:
    templates = {k: t.assistant for k, t in get_templates().items()}
    return config_for_create(changes, catalog=get_catalog(), templates=templates)


@pytest.mark.parametrize(
    ("said", "phrase"),
    [
        ("Please stop calling me", "stop calling me"),
        ("PLEASE, STOP CALLING ME!!!", "stop calling me"),
        ("ok... stop-calling me.", "stop calling me"),
        ("Just take me off your list, thanks", "take me off your list"),
        ("Don't call me again", "don't call me"),
        ("Don\u2019t call me again", "don't call me"),  # a typographic apostrophe
        ("dont call me", "don't call me"),
        ("Can you remove me from the list?", "remove me from the list"),
        ("I DO NOT want any more calls", "i do not want any more calls"),
        ("  stop   calling  me  ", "stop calling me"),
    ],
)
def test_default_phrases_are_found_whatever_the_case_and_punctuation(
    said: str, phrase: str
) -> None:
    assert phrase_said(said, DEFAULT_OPT_OUT_PHRASES) == phrase


@pytest.mark.parametrize(
    "said",
    [
        "Stop by and call me tomorrow",
        "Who is calling me?",
        "I'd like to be on your list",
        "Could you call me back later",
        "remove",
        "",
    ],
)
def test_ordinary_words_are_not_an_opt_out(said: str) -> None:
    assert phrase_said(said, DEFAULT_OPT_OUT_PHRASES) is None


def test_phrases_match_whole_words_only() -> None:
    assert phrase_said("stop calling meetings at noon", ["stop calling me"]) is None
    assert phrase_said("unsubscribe", ["subscribe"]) is None
    assert phrase_said("bitte nicht mehr anrufen!", ["Nicht mehr anrufen"]) == "Nicht mehr anrufen"
    assert phrase_said("NO MÁS LLAMADAS, por favor", ["no más llamadas"]) == "no más llamadas"
    # A phrase of punctuation only never matches anything.
    assert phrase_said("hello", ["?!"]) is None


def test_every_assistant_has_the_opt_out_and_the_disclosure_by_default() -> None:
    config = _create()
    assert config.opt_out.phrases == list(DEFAULT_OPT_OUT_PHRASES)
    assert config.opt_out.confirmation == DEFAULT_OPT_OUT_CONFIRMATION
    assert config.ai_disclosure_message == DEFAULT_AI_DISCLOSURE
    # An assistant stored before these settings existed reads back with them.
    stored = config.model_dump(mode="json", exclude={"opt_out", "ai_disclosure_message"})
    assert AssistantConfig.model_validate(stored).opt_out.phrases == list(DEFAULT_OPT_OUT_PHRASES)


def test_the_opt_out_is_configured_by_merging_and_checked_with_its_param() -> None:
    config = _create(opt_out={"phrases": ["Nicht mehr anrufen"]})
    assert config.opt_out.phrases == ["Nicht mehr anrufen"]
    assert config.opt_out.confirmation == DEFAULT_OPT_OUT_CONFIRMATION  # merged key by key
    changed = config_for_update(
        config, {"opt_out": {"confirmation": "Verstanden. Auf Wiederhören."}}, catalog=get_catalog()
    )
    assert changed.opt_out.phrases == ["Nicht mehr anrufen"]
    assert changed.opt_out.confirmation == "Verstanden. Auf Wiederhören."
    cases: list[tuple[dict[str, Any], str]] = [
        ({"opt_out": {"phrases": ["x" * 101]}}, "opt_out.phrases[0]"),
        ({"opt_out": {"phrases": [""]}}, "opt_out.phrases[0]"),
        ({"opt_out": {"confirmation": ""}}, "opt_out.confirmation"),
        ({"opt_out": {"confirmation": "Bye {{contact.nickname}}"}}, "opt_out.confirmation"),
        ({"opt_out": {"phrases": ["stop"], "enabled": False}}, "opt_out.enabled"),
        ({"ai_disclosure_message": ""}, "ai_disclosure_message"),
        ({"ai_disclosure_message": "AI {{call.weather}}"}, "ai_disclosure_message"),
    ]
    for changes, param in cases:
        with pytest.raises(InvalidRequest) as raised:
            _create(**changes)
        assert raised.value.param == param, (changes, raised.value)


def test_opt_out_is_always_offered_and_no_webhook_may_take_its_name() -> None:
    assert [spec.name for spec in tool_specs([])] == ["opt_out"]
    with pytest.raises(InvalidRequest) as raised:
        _create(
            tools=[
                {
                    "type": "webhook",
                    "config": {
                        "name": "opt_out",
                        "description": "mine",
                        "url": "https://example.com/hook",
                    },
                }
            ]
        )
    assert raised.value.param == "tools[0].config.name"
