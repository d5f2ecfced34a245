"""Assistant configurations: templates, merging, prompt variables, errors naming the param."""

from __future__ import annotations

from typing import Any

import pytest

from talkturo.domain.assistant_templates import get_templates
from talkturo.domain.assistants import (
    AssistantConfig,
    config_for_create,
    config_for_update,
    deep_merge,
    estimate_of,
    param_of,
    prompt_variables,
    variable_problem,
)
from talkturo.domain.catalog import Catalog, get_catalog
from talkturo.errors import InvalidRequest


@pytest.fixture
def catalog() -> Catalog:
    return get_catalog()


def _templates() -> dict[str, dict[str, Any]]:
    return {k: t.assistant for k, t in get_templates().items()}


def create(**changes: Any) -> AssistantConfig:
    return config_for_create(changes, catalog=get_catalog(), templates=_templates())


def refused(changes: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        create(**changes)
    return raised.value


# --------------------------------------------------------------------------- templates


def test_the_four_templates_exist_custom_first() -> None:
    assert list(get_templates()) == ["custom", "outbound-setter", "inbound-support", "follow-up"]


@pytest.mark.parametrize("template", list(get_templates()))
def test_every_template_validates_and_uses_prompt_variables(
    template: str, catalog: Catalog
) -> None:
    # Given a template / When an assistant is made from it alone / Then it is valid and complete
    config = create(template=template)
    assert config.name and config.system_prompt and config.first_message
    assert config.success_criteria
    assert config.first_message_mode == "assistant_speaks_first"
    assert config.tools, "a template pre-fills tools"
    assert prompt_variables(config.system_prompt), "a template's prompt uses variables"
    assert estimate_of(config, catalog).total > 0


def test_template_telephony_toggles_fit_their_purpose() -> None:
    setter = create(template="outbound-setter").telephony
    support = create(template="inbound-support").telephony
    assert (setter.outbound_enabled, setter.inbound_enabled) == (True, False)
    assert setter.voicemail.action == "leave_message"
    assert (support.outbound_enabled, support.inbound_enabled) == (False, True)


def test_no_template_means_custom() -> None:
    assert create() == create(template="custom")


def test_unknown_template_lists_the_known_ones() -> None:
    error = refused({"template": "cold-caller"})
    assert error.param == "template"
    assert "outbound-setter" in error.message


# --------------------------------------------------------------------------- merging


def test_deep_merge_merges_objects_and_replaces_lists() -> None:
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "tools": [1, 2], "x": 1}
    merged = deep_merge(base, {"a": {"c": {"d": 9}}, "tools": [3], "y": None})
    assert merged == {"a": {"b": 1, "c": {"d": 9, "e": 3}}, "tools": [3], "x": 1, "y": None}
    assert base["a"]["c"]["d"] == 2, "the base is not modified"


def test_overrides_win_over_the_template_layer_by_layer() -> None:
    config = create(
        template="follow-up",
        voice={"provider": "openai", "model": "tts-1", "voice_id": "nova", "speed": 1.2},
        telephony={"max_call_duration_seconds": 300},
        tools=[],
    )
    assert (config.voice.provider, config.voice.voice_id, config.voice.speed) == (
        "openai",
        "nova",
        1.2,
    )
    assert config.telephony.max_call_duration_seconds == 300
    assert config.telephony.voicemail.action == "leave_message", "from the template"
    assert config.tools == []


def test_patch_changes_only_what_it_names(catalog: Catalog) -> None:
    current = create(template="outbound-setter")
    updated = config_for_update(
        current, {"transcriber": {"keyterms": ["Talkturo"]}}, catalog=catalog
    )
    assert updated.transcriber.keyterms == ["Talkturo"]
    assert updated.model_dump(exclude={"transcriber"}) == current.model_dump(
        exclude={"transcriber"}
    )


# --------------------------------------------------------------------------- first message


def test_first_message_mode_follows_the_first_message(catalog: Catalog) -> None:
    assert create(first_message="").first_message_mode == "wait_for_caller"
    assert create(first_message="Hello!").first_message_mode == "assistant_speaks_first"
    # a caller-first assistant may still have a scripted opening reply
    waiting = create(first_message="Hello!", first_message_mode="wait_for_caller")
    assert waiting.first_message_mode == "wait_for_caller"
    # a PATCH that empties the message re-derives the mode
    assert (
        config_for_update(create(), {"first_message": ""}, catalog=catalog).first_message_mode
        == "wait_for_caller"
    )


def test_speaking_first_needs_something_to_say() -> None:
    error = refused({"first_message": "", "first_message_mode": "assistant_speaks_first"})
    assert error.param == "first_message"


# --------------------------------------------------------------------------- prompt variables


def test_prompt_variables_are_read_with_or_without_spaces() -> None:
    text = "Hi {{contact.first_name}}, {{ company.name }} and {{contact.custom.plan_tier}}"
    assert prompt_variables(text) == [
        "contact.first_name",
        "company.name",
        "contact.custom.plan_tier",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Hello {{contact.first_name}} {{contact.last_name}}",
        "{{contact.email}} {{contact.phone}} {{contact.job_title}}",
        "{{company.name}} {{company.industry}} {{company.custom.arr_band}}",
        "{{campaign.name}} {{call.direction}} {{call.date}} {{account.name}}",
        "No variables at all, and single { braces } are fine.",
    ],
)
def test_known_variables_pass(text: str) -> None:
    assert variable_problem(text) is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Hi {{contact.nickname}}", "contact.nickname"),
        ("Hi {{first_name}}", "first_name"),
        ("{{contact.custom.}}", "contact.custom."),
        ("{{contact.custom.Bad Key}}", "contact.custom.Bad Key"),
        ("{{summary}}", "summary"),
        ("{{}}", "{{}}"),
    ],
)
def test_unknown_variables_are_named(text: str, named: str) -> None:
    problem = variable_problem(text)
    assert problem is not None
    assert named in problem


def test_an_unclosed_variable_is_refused() -> None:
    assert "no matching" in (variable_problem("Hi {{contact.first_name") or "")


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"system_prompt": "You call {{contact.nickname}}."}, "system_prompt"),
        ({"first_message": "Hi {{contact.nick}}"}, "first_message"),
        (
            {"telephony": {"voicemail": {"action": "leave_message", "message": "{{x.y}}"}}},
            "telephony.voicemail.message",
        ),
        (
            {"tools": [{"type": "end_call", "config": {"closing_message": "Bye {{who}}"}}]},
            "tools[0].config.closing_message",
        ),
    ],
)
def test_unknown_variable_is_422_on_the_field_using_it(changes: dict[str, Any], param: str) -> None:
    error = refused(changes)
    assert error.status == 422
    assert error.param == param
    assert "unknown prompt variable" in error.message


def test_summary_is_known_in_a_warm_intro_only() -> None:
    transfer = {
        "type": "transfer_call",
        "config": {
            "mode": "warm",
            "destinations": [{"name": "Desk", "number": "+14155550123"}],
            "warm_intro": "Caller {{contact.first_name}}: {{summary}}",
        },
    }
    assert create(tools=[transfer]).tools[0].type == "transfer_call"
    assert refused({"system_prompt": "Recap: {{summary}}"}).param == "system_prompt"


# --------------------------------------------------------------------------- errors name params


@pytest.mark.parametrize(
    ("changes", "param", "mentions"),
    [
        ({"llm": {"provider": "mistral"}}, "llm.provider", "openai"),
        ({"llm": {"model": "gpt-2"}}, "llm.model", "gpt-4o-mini"),
        ({"llm": {"temperature": 2.5}}, "llm.temperature", "2"),
        ({"llm": {"max_tokens": 0}}, "llm.max_tokens", "16"),
        ({"voice": {"provider": "azure"}}, "voice.provider", "elevenlabs"),
        ({"voice": {"model": "eleven_flash_v2_5"}}, "voice.model", "sonic-3"),
        ({"voice": {"voice_id": "nobody"}}, "voice.voice_id", "e00d0e4c"),
        ({"voice": {"speed": 3}}, "voice.speed", "2"),
        (
            {"voice": {"provider": "openai", "model": "tts-1", "voice_id": "ballad"}},
            "voice.voice_id",
            "alloy",
        ),
        ({"transcriber": {"provider": "whisper"}}, "transcriber.provider", "deepgram"),
        ({"transcriber": {"model": "nova-1"}}, "transcriber.model", "nova-3"),
        ({"transcriber": {"language": "tlh"}}, "transcriber.language", "multi"),
        ({"transcriber": {"keyterms": ["x" * 51]}}, "transcriber.keyterms[0]", "50"),
        ({"transcriber": {"keyterms": ["a"] * 51}}, "transcriber.keyterms", "50"),
        (
            {"transcriber": {"provider": "cartesia", "model": "ink-whisper", "keyterms": ["a"]}},
            "transcriber.keyterms",
            "deepgram/nova-3",
        ),
        ({"telephony": {"call_region": "apac"}}, "telephony.call_region", "eu"),
        (
            {"telephony": {"max_call_duration_seconds": 7200}},
            "telephony.max_call_duration_seconds",
            "3600",
        ),
        (
            {"telephony": {"voicemail": {"action": "leave_message", "message": None}}},
            "telephony.voicemail.message",
            "leave_message",
        ),
        ({"telephony": {"voicemail": {"action": "beep"}}}, "telephony.voicemail.action", "hang_up"),
        ({"name": ""}, "name", "1"),
        ({"system_prompt": "x" * 20_001}, "system_prompt", "20000"),
        ({"llm": "gpt-4o"}, "llm", "dictionary"),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"llm": {"top_p": 1}}, "llm.top_p", "unknown field"),
        ({"id": "asst_x"}, "id", "read-only"),
        ({"estimated_credits_per_minute": "0"}, "estimated_credits_per_minute", "read-only"),
    ],
)
def test_every_error_names_its_param(changes: dict[str, Any], param: str, mentions: str) -> None:
    # Given a configuration with one mistake / When validated / Then 422 naming exactly that param
    error = refused(changes)
    assert error.status == 422
    assert error.param == param
    assert error.message.startswith(f"{param}: ")
    assert mentions in error.message


def test_param_of_writes_list_indexes_in_brackets() -> None:
    assert param_of(("tools", 2, "config", "url")) == "tools[2].config.url"
    assert param_of(("tools", 0, "config", "destinations", 1, "number")) == (
        "tools[0].config.destinations[1].number"
    )
    assert param_of(()) == ""


def test_the_request_schema_documents_the_layers_and_every_reference_resolves() -> None:
    # Given the app's OpenAPI document (built in process, no network)
    from talkturo.api.app import create_app

    document = create_app().openapi()
    schemas = document["components"]["schemas"]

    # Then the create/patch body documents each layer through the answer's own schemas
    write = schemas["AssistantWrite"]["properties"]
    for layer, schema in (
        ("llm", "LlmConfig"),
        ("voice", "VoiceConfig"),
        ("transcriber", "TranscriberConfig"),
        ("telephony", "TelephonyConfig"),
    ):
        assert write[layer]["allOf"] == [{"$ref": f"#/components/schemas/{schema}"}]

    # And no reference anywhere points at a schema that does not exist
    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [
                r for v in node.values() for r in refs(v)
            ]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    missing = {r for r in refs(document) if r.rsplit("/", 1)[-1] not in schemas}
    assert not missing
