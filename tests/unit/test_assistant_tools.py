"""Tool configurations, their checks, and secrets that are never shown."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from talkturo.domain.assistant_templates import get_templates
from talkturo.domain.assistant_tools import (
    REVEAL_SECRETS,
    carry_secrets,
    mask,
    public_https_url,
)
from talkturo.domain.assistants import (
    AssistantConfig,
    AssistantRecord,
    config_for_create,
    config_for_update,
    present,
)
from talkturo.domain.catalog import get_catalog
from talkturo.errors import InvalidRequest

API_KEY = "cal_live_0123456789abcdef"
HEADER = "Bearer sk_live_abcdefghijklmnop"
SIGNING = "whsec_0123456789abcdef"


def end_call(**config: Any) -> dict[str, Any]:
    return {"type": "end_call", "config": {"phrases": ["goodbye"], **config}}


def transfer(**config: Any) -> dict[str, Any]:
    base = {"mode": "cold", "destinations": [{"name": "Sales", "number": "+14155550123"}]}
    return {"type": "transfer_call", "config": {**base, **config}}


def extraction(**config: Any) -> dict[str, Any]:
    base = {"fields": [{"key": "budget", "description": "Their budget", "type": "number"}]}
    return {"type": "info_extraction", "config": {**base, **config}}


def scheduling(**config: Any) -> dict[str, Any]:
    base = {"provider": "calcom", "api_key": API_KEY, "event_type": "123456"}
    return {"type": "scheduling", "config": {**base, **config}}


def webhook(**config: Any) -> dict[str, Any]:
    base = {
        "name": "lookup_order",
        "description": "Look up an order",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
        "url": "https://api.example.com/orders",
        "headers": {"Authorization": HEADER},
        "secret": SIGNING,
    }
    return {"type": "webhook", "config": {**base, **config}}


def create(tools: list[dict[str, Any]]) -> AssistantConfig:
    templates = {k: t.assistant for k, t in get_templates().items()}
    return config_for_create({"tools": tools}, catalog=get_catalog(), templates=templates)


def refused(tools: list[dict[str, Any]]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        create(tools)
    return raised.value


def test_a_full_set_of_tools_is_accepted() -> None:
    # Given one tool of each type and two webhooks / When validated / Then all are kept, typed
    config = create(
        [
            end_call(closing_message="Bye {{contact.first_name}}"),
            transfer(mode="warm", warm_intro="{{summary}}", ring_tone=False),
            extraction(target="company", allow_create_fields=True),
            scheduling(timezone="Europe/Berlin"),
            webhook(),
            webhook(name="create_ticket", method="PUT", timeout_seconds=20),
        ]
    )
    assert [t.type for t in config.tools] == [
        "end_call",
        "transfer_call",
        "info_extraction",
        "scheduling",
        "webhook",
        "webhook",
    ]
    assert all(t.enabled for t in config.tools)


def test_defaults_of_each_tool() -> None:
    minimal_webhook = {
        "type": "webhook",
        "config": {"name": "ping", "description": "Ping", "url": "https://example.com/ping"},
    }
    end, move, extract, hook = create(
        [{"type": "end_call"}, transfer(), extraction(), minimal_webhook]
    ).tools
    assert end.config.phrases == []
    assert end.config.closing_message is None
    assert move.config.ring_tone is True
    assert extract.config.target == "contact"
    assert extract.config.allow_create_fields is False
    assert hook.config.method == "POST"
    assert hook.config.timeout_seconds == 10
    assert hook.config.parameters == {"type": "object", "properties": {}}
    assert hook.config.headers == {}
    assert hook.config.secret is None


@pytest.mark.parametrize(
    ("tools", "param", "mentions"),
    [
        ([{"type": "phone_a_friend"}], "tools[0].type", "end_call"),
        ([{"config": {}}], "tools[0].type", "webhook"),
        ([end_call(), end_call()], "tools[1].type", "only one end_call"),
        ([scheduling(), scheduling()], "tools[1].type", "only one scheduling"),
        ([end_call(phrases=["x" * 101])], "tools[0].config.phrases[0]", "100"),
        ([end_call(), {"type": "end_call", "enabled": "maybe"}], "tools[1].enabled", "bool"),
        ([transfer(destinations=[])], "tools[0].config.destinations", "at least 1"),
        ([transfer(mode="lukewarm")], "tools[0].config.mode", "cold"),
        (
            [transfer(destinations=[{"name": "A", "number": "4155550123"}])],
            "tools[0].config.destinations[0].number",
            "E.164",
        ),
        (
            [transfer(destinations=[{"name": "A", "number": "+1415555"}])],
            "tools[0].config.destinations[0].number",
            "not a valid phone number",
        ),
        (
            [
                transfer(
                    destinations=[
                        {"name": "Desk", "number": "+14155550123"},
                        {"name": "desk", "number": "+442071838750"},
                    ]
                )
            ],
            "tools[0].config.destinations[1].name",
            "unique",
        ),
        (
            [transfer(warm_intro="{{contact.shoe_size}}")],
            "tools[0].config.warm_intro",
            "unknown prompt variable",
        ),
        ([extraction(fields=[])], "tools[0].config.fields", "at least 1"),
        ([extraction(target="deal")], "tools[0].config.target", "contact"),
        (
            [extraction(fields=[{"key": "Budget", "description": "b"}])],
            "tools[0].config.fields[0].key",
            "lowercase",
        ),
        (
            [extraction(fields=[{"key": "tier", "description": "t", "type": "select"}])],
            "tools[0].config.fields[0].options",
            "at least one option",
        ),
        (
            [extraction(fields=[{"key": "n", "description": "n", "options": ["a"]}])],
            "tools[0].config.fields[0].options",
            "only select",
        ),
        (
            [
                extraction(
                    fields=[
                        {"key": "a", "description": "a"},
                        {"key": "a", "description": "again"},
                    ]
                )
            ],
            "tools[0].config.fields[1].key",
            "twice",
        ),
        ([scheduling(provider="acuity")], "tools[0].config.provider", "calendly"),
        ([scheduling(api_key="short")], "tools[0].config.api_key", "8"),
        (
            [{"type": "scheduling", "config": {"provider": "calcom", "event_type": "1"}}],
            "tools[0].config.api_key",
            "required",
        ),
        ([scheduling(event_type="30min")], "tools[0].config.event_type", "numeric"),
        (
            [scheduling(provider="calendly", event_type="123")],
            "tools[0].config.event_type",
            "https://api.calendly.com/event_types/",
        ),
        ([scheduling(timezone="Mars/Base")], "tools[0].config.timezone", "IANA"),
        ([webhook(name="lookup order")], "tools[0].config.name", "function name"),
        ([webhook(name="end_call")], "tools[0].config.name", "reserved"),
        ([webhook(), webhook()], "tools[1].config.name", "already named"),
        ([webhook(description="")], "tools[0].config.description", "1"),
        ([webhook(method="TRACE")], "tools[0].config.method", "GET"),
        ([webhook(timeout_seconds=0)], "tools[0].config.timeout_seconds", "1"),
        ([webhook(timeout_seconds=21)], "tools[0].config.timeout_seconds", "20"),
        ([webhook(parameters={"type": "array"})], "tools[0].config.parameters", "object"),
        (
            [webhook(parameters={"type": "object", "properties": {"a": {"type": "strin"}}})],
            "tools[0].config.parameters",
            "Draft 2020-12",
        ),
        (
            [webhook(parameters={"type": "object", "required": "order"})],
            "tools[0].config.parameters",
            "JSON Schema",
        ),
        (
            [
                webhook(
                    parameters={
                        "type": "object",
                        "properties": {"a": {"$ref": "https://169.254.169.254/schema"}},
                    }
                )
            ],
            "tools[0].config.parameters",
            "own definitions",
        ),
        (
            [webhook(parameters={"type": "object", "description": "x" * 17_000})],
            "tools[0].config.parameters",
            "bytes",
        ),
        ([webhook(headers={"Bad Header": "x"})], "tools[0].config.headers", "header name"),
        ([webhook(headers={"Host": "evil"})], "tools[0].config.headers", "set by the platform"),
        ([webhook(headers={"X-A": "1\r\nX-B: 2"})], "tools[0].config.headers", "one line"),
        ([webhook(headers={"x-a": "1", "X-A": "2"})], "tools[0].config.headers", "twice"),
        ([webhook(secret="short")], "tools[0].config.secret", "16"),
        ([webhook(url="http://api.example.com/x")], "tools[0].config.url", "https"),
        ([webhook(url="https://localhost/x")], "tools[0].config.url", "local"),
        ([end_call(), webhook(url="https://10.0.0.8/x")], "tools[1].config.url", "private"),
        ([webhook(bogus=1)], "tools[0].config.bogus", "unknown field"),
    ],
)
def test_every_tool_error_names_its_param(
    tools: list[dict[str, Any]], param: str, mentions: str
) -> None:
    error = refused(tools)
    assert error.status == 422
    assert error.param == param
    assert mentions in error.message


def test_local_references_in_parameters_are_fine() -> None:
    parameters = {
        "type": "object",
        "$defs": {"sku": {"type": "string", "pattern": "^[A-Z0-9]+$"}},
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/sku"}}},
    }
    assert create([webhook(parameters=parameters)]).tools[0].config.parameters == parameters


def test_phone_numbers_are_stored_in_e164() -> None:
    config = create([transfer(destinations=[{"name": "UK", "number": "+44 20 7183 8750"}])])
    assert config.tools[0].config.destinations[0].number == "+442071838750"


def test_calendly_uri_and_numeric_calcom_ids_are_accepted() -> None:
    uri = "https://api.calendly.com/event_types/AAAAAAAAAAAAAAAA"
    assert (
        create([scheduling(provider="calendly", event_type=uri)]).tools[0].config.event_type == uri
    )
    assert create([scheduling(event_type=42)]).tools[0].config.event_type == "42"


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/call",
        "https://api.example.co.uk:8443/v1/lookup?x=1",
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://xn--bcher-kva.example/hook",
    ],
)
def test_public_https_urls_pass(url: str) -> None:
    assert public_https_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/call",
        "ftp://hooks.example.com/call",
        "https://localhost/x",
        "https://LOCALHOST./x",
        "https://api.localhost/x",
        "https://printer.local/x",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://172.16.0.1/x",
        "https://192.168.1.10/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/x",
        "https://0.0.0.0/x",
        "https://[::1]/x",
        "https://[fe80::1]/x",
        "https://[fd00::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://224.0.0.1/x",
        "https://2130706433/x",
        "https://127.1/x",
        "https://0x7f.0.0.1/x",
        "https://intranet/x",
        "https://user:pass@hooks.example.com/x",
        "https://hooks.example.com:99999/x",
        "https:///nohost",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_private_local_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"must|valid"):
        public_https_url(url)


# --------------------------------------------------------------------------- secrets


def _record(config: AssistantConfig) -> AssistantRecord:
    now = datetime.now(UTC)
    fields = {name: getattr(config, name) for name in AssistantConfig.model_fields}
    return AssistantRecord(
        **fields, id="asst_01J00000000000000000000000", created_at=now, updated_at=now
    )


def test_secrets_are_masked_in_every_answer_and_clear_only_for_storage() -> None:
    # Given an assistant with a scheduling key, webhook headers and a signing secret
    config = create([scheduling(), webhook()])

    # When answered / Then no secret appears, only whether it is set and its last characters
    answer = present(_record(config), get_catalog()).model_dump(mode="json")
    text = json.dumps(answer)
    for secret in (API_KEY, HEADER, SIGNING, "sk_live_abcdefghijklmnop"):
        assert secret not in text
    assert answer["tools"][0]["config"]["api_key_set"] is True
    assert answer["tools"][0]["config"]["api_key_last4"] == "cdef"
    assert answer["tools"][1]["config"]["headers"] == {"Authorization": "****mnop"}
    assert answer["tools"][1]["config"]["secret_set"] is True

    # And even a plain dump or repr of the configuration keeps them hidden
    assert API_KEY not in json.dumps(config.model_dump(mode="json"))
    assert API_KEY not in repr(config)

    # But the storage form has them, and reads back equal
    stored = config.model_dump_json(context=REVEAL_SECRETS)
    assert API_KEY in stored and HEADER in stored and SIGNING in stored
    again = AssistantConfig.model_validate_json(stored)
    assert again.model_dump(mode="json", context=REVEAL_SECRETS) == json.loads(stored)


def test_write_checks_do_not_refuse_what_was_stored() -> None:
    # Given a stored document whose number a later libphonenumber release might call invalid
    stored = create([transfer()]).model_dump(mode="json", context=REVEAL_SECRETS)
    stored["tools"][0]["config"]["destinations"][0]["number"] = "+1415555"
    # When it is read back (no write context) / Then it loads; only writes run that check
    again = AssistantConfig.model_validate(stored)
    assert again.tools[0].config.destinations[0].number == "+1415555"
    with pytest.raises(InvalidRequest):
        create([stored["tools"][0]])


def test_a_configuration_too_big_for_one_item_is_refused() -> None:
    # Given 20 webhooks with large (individually valid) parameter schemas
    big = {"type": "object", "description": "x" * 15_500}
    hooks = [webhook(name=f"hook_{i}", parameters=big) for i in range(20)]
    # Then the whole is refused before it reaches the table
    error = refused(hooks)
    assert "too large" in error.message


def test_mask_never_shows_much_of_a_short_secret() -> None:
    assert mask("abc") == "****"
    assert mask("abcdefghijk") == "****"
    assert mask("abcdefghijkl") == "****ijkl"


def _stored_tools(config: AssistantConfig) -> list[dict[str, Any]]:
    dumped = config.model_dump(mode="json", context=REVEAL_SECRETS)
    tools: list[dict[str, Any]] = dumped["tools"]
    return tools


def test_a_patch_that_leaves_secrets_out_keeps_them() -> None:
    # Given stored tools with secrets
    current = create([scheduling(), webhook()])
    # When the tools come back without secrets, the header masked as answered
    answered = present(_record(current), get_catalog()).model_dump(mode="json")["tools"]
    back = copy.deepcopy(answered)
    back[0]["config"] = {"provider": "calcom", "event_type": "777"}
    back[1]["config"].pop("secret_set")
    updated = config_for_update(current, {"tools": back}, catalog=get_catalog())
    # Then the stored secrets are kept and the other change applied
    tools = _stored_tools(updated)
    assert tools[0]["config"]["api_key"] == API_KEY
    assert tools[0]["config"]["event_type"] == "777"
    assert tools[1]["config"]["headers"] == {"Authorization": HEADER}
    assert tools[1]["config"]["secret"] == SIGNING


def test_a_patch_can_replace_or_remove_secrets() -> None:
    current = create([scheduling(), webhook()])
    updated = config_for_update(
        current,
        {
            "tools": [
                scheduling(api_key="cal_live_new_key_9999"),
                webhook(
                    headers={"Authorization": "Bearer new_token_123456", "X-Extra": "1"},
                    secret=None,
                ),
            ]
        },
        catalog=get_catalog(),
    )
    tools = _stored_tools(updated)
    assert tools[0]["config"]["api_key"] == "cal_live_new_key_9999"
    assert tools[1]["config"]["headers"] == {
        "Authorization": "Bearer new_token_123456",
        "X-Extra": "1",
    }
    assert tools[1]["config"]["secret"] is None


def test_secrets_are_not_carried_to_a_renamed_webhook() -> None:
    # A webhook is matched by name: a new name is a new webhook, its secrets must be given
    old = _stored_tools(create([webhook()]))
    carried = carry_secrets([{"type": "webhook", "config": {"name": "other_hook"}}], old)
    assert "headers" not in carried[0]["config"]
    assert "secret" not in carried[0]["config"]


def test_a_new_scheduling_tool_needs_its_key() -> None:
    current = create([end_call()])
    with pytest.raises(InvalidRequest) as raised:
        config_for_update(
            current,
            {
                "tools": [
                    {"type": "scheduling", "config": {"provider": "calcom", "event_type": "1"}}
                ]
            },
            catalog=get_catalog(),
        )
    assert raised.value.param == "tools[0].config.api_key"
