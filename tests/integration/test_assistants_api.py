"""Assistants over HTTP, against the emulated table."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo.errors import Conflict, NotFound
from talkturo.store import assistants as assistant_store
from tests.conftest import Tenant

TEMPLATES = ("custom", "outbound-setter", "inbound-support", "follow-up")

SCHEDULING = {
    "type": "scheduling",
    "config": {
        "provider": "calcom",
        "api_key": "cal_live_0123456789abcdef",
        "event_type": 123456,
        "timezone": "America/Chicago",
    },
}
WEBHOOK = {
    "type": "webhook",
    "config": {
        "name": "lookup_order",
        "description": "Look up an order by its number.",
        "parameters": {
            "type": "object",
            "properties": {"order_number": {"type": "string"}},
            "required": ["order_number"],
        },
        "url": "https://api.example.com/orders/lookup",
        "headers": {"Authorization": "Bearer sk_live_abcdefghijklmnop"},
        "secret": "whsec_0123456789abcdef",
    },
}


def _create(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/assistants", json=body, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


@pytest.mark.parametrize("template", TEMPLATES)
def test_create_from_each_template(client: TestClient, tenant: Tenant, template: str) -> None:
    # Given the template as listed / When an assistant is created from it with no overrides
    listed = client.get("/v1/assistant-templates", headers=tenant.headers).json()["data"]
    expected = next(t for t in listed if t["id"] == template)["assistant"]
    created = _create(client, tenant, template=template)

    # Then it is exactly what the listing promised, priced, and readable back
    assert created["id"].startswith("asst_")
    assert {k: created[k] for k in expected} == expected
    assert created["phone_number_ids"] == []
    assert created["active_campaign_count"] == 0
    assert Decimal(created["estimated_credits_per_minute"]) == Decimal(
        created["estimate_breakdown"]["total"]
    )
    fetched = client.get(f"/v1/assistants/{created['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_default_assistant_costs_one_credit_a_minute(client: TestClient, tenant: Tenant) -> None:
    # Given no template and no fields / When created / Then the custom defaults, at 1.0000 a minute
    created = _create(client, tenant)
    assert created["name"] == "My assistant"
    assert created["llm"]["provider"] == "openai"
    assert created["estimated_credits_per_minute"] == "1.0000"
    assert set(created["estimate_breakdown"]) == {
        "telephony",
        "llm",
        "voice",
        "transcriber",
        "platform",
        "total",
    }


def test_overrides_merge_per_layer_over_the_template(client: TestClient, tenant: Tenant) -> None:
    # Given the outbound-setter template / When only some fields of some layers are overridden
    created = _create(
        client,
        tenant,
        template="outbound-setter",
        name="Q3 setter",
        llm={"provider": "anthropic", "model": "claude-haiku-4-5"},
        telephony={"voicemail": {"action": "hang_up"}, "call_region": "eu"},
    )

    # Then the overridden keys change and every other key keeps the template's value
    assert created["name"] == "Q3 setter"
    assert created["llm"] == {
        "provider": "anthropic",
        "model": "claude-haiku-4-5",
        "temperature": 0.7,
        "max_tokens": 250,
    }
    assert created["telephony"]["voicemail"]["action"] == "hang_up"
    assert created["telephony"]["voicemail"]["detect"] is True
    assert created["telephony"]["outbound_enabled"] is True
    assert created["telephony"]["inbound_enabled"] is False
    assert [t["type"] for t in created["tools"]] == ["end_call", "info_extraction"]
    # 0.25 eu + 0.20 haiku + 0.25 sonic-3 + 0.15 nova-3 + 0.30 platform
    assert created["estimated_credits_per_minute"] == "1.1500"


def test_invalid_create_names_the_param_and_saves_nothing(
    client: TestClient, tenant: Tenant
) -> None:
    # Given a webhook pointing at a private address / When created / Then 422 on that param
    bad = {**WEBHOOK, "config": {**WEBHOOK["config"], "url": "https://10.1.2.3/hook"}}
    answer = client.post(
        "/v1/assistants",
        json={"tools": [{"type": "end_call"}, bad]},
        headers=tenant.headers,
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["param"] == "tools[1].config.url"
    assert error["type"] == "invalid_request_error"

    # And an unknown model lists the allowed ones
    answer = client.post(
        "/v1/assistants", json={"voice": {"model": "sonic-9"}}, headers=tenant.headers
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "voice.model"
    assert "sonic-3" in answer.json()["error"]["message"]
    listed = client.get("/v1/assistants", headers=tenant.headers).json()
    assert listed["data"] == []


def test_secrets_are_write_only(client: TestClient, tenant: Tenant) -> None:
    # Given an assistant with a scheduling key, webhook headers and a signing secret
    created = _create(client, tenant, tools=[SCHEDULING, WEBHOOK])

    # Then no answer carries them: only whether they are set and a masked tail
    for answer in (
        created,
        client.get(f"/v1/assistants/{created['id']}", headers=tenant.headers).json(),
        client.get("/v1/assistants", headers=tenant.headers).json()["data"][0],
    ):
        text = str(answer)
        for secret in ("cal_live_0123456789abcdef", "sk_live_abcdefghijklmnop", "whsec_0123"):
            assert secret not in text
        scheduling, webhook = answer["tools"]
        assert scheduling["config"]["api_key_set"] is True
        assert scheduling["config"]["api_key_last4"] == "cdef"
        assert "api_key" not in scheduling["config"]
        assert scheduling["config"]["event_type"] == "123456"
        assert webhook["config"]["headers"] == {"Authorization": "****mnop"}
        assert webhook["config"]["secret_set"] is True
        assert "secret" not in webhook["config"]

    # And the stored record still has them in clear, for the calls that need them
    record, _ = assistant_store.get(tenant.account_id, created["id"])
    stored = record.model_dump(mode="json", context={"reveal_secrets": True})
    assert stored["tools"][0]["config"]["api_key"] == "cal_live_0123456789abcdef"
    assert stored["tools"][1]["config"]["headers"] == {
        "Authorization": "Bearer sk_live_abcdefghijklmnop"
    }


def test_patch_merges_per_layer_and_keeps_unsent_secrets(
    client: TestClient, tenant: Tenant
) -> None:
    # Given an assistant with secrets
    created = _create(client, tenant, tools=[SCHEDULING, WEBHOOK])
    url = f"/v1/assistants/{created['id']}"

    # When a PATCH changes one key of a layer and sends the tools back as they were answered
    masked_tools = created["tools"]
    scheduling_back = {
        "type": "scheduling",
        "config": {"provider": "calcom", "event_type": "654321"},
    }
    webhook_back = {
        "type": "webhook",
        "config": {
            k: v for k, v in masked_tools[1]["config"].items() if k not in ("secret_set", "headers")
        }
        | {"headers": masked_tools[1]["config"]["headers"]},
    }
    answer = client.patch(
        url,
        json={"llm": {"temperature": 0.2}, "tools": [scheduling_back, webhook_back]},
        headers=tenant.headers,
    )

    # Then only that key changed, and the secrets survived the round trip
    assert answer.status_code == 200, answer.text
    updated = answer.json()
    assert updated["llm"]["temperature"] == 0.2
    assert updated["llm"]["model"] == created["llm"]["model"]
    assert updated["tools"][0]["config"]["event_type"] == "654321"
    assert updated["updated_at"] > created["updated_at"]
    record, _ = assistant_store.get(tenant.account_id, created["id"])
    stored = record.model_dump(mode="json", context={"reveal_secrets": True})
    assert stored["tools"][0]["config"]["api_key"] == "cal_live_0123456789abcdef"
    assert stored["tools"][1]["config"]["headers"]["Authorization"].endswith("mnop")
    assert stored["tools"][1]["config"]["secret"] == "whsec_0123456789abcdef"


def test_patch_is_validated_whole_and_refuses_read_only_fields(
    client: TestClient, tenant: Tenant
) -> None:
    created = _create(client, tenant)
    url = f"/v1/assistants/{created['id']}"

    # A model that is not the (unchanged) provider's is refused with the param
    answer = client.patch(url, json={"llm": {"model": "claude-haiku-4-5"}}, headers=tenant.headers)
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "llm.model"

    # Changing the provider and model together is fine
    answer = client.patch(
        url,
        json={"llm": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
        headers=tenant.headers,
    )
    assert answer.status_code == 200
    assert answer.json()["estimated_credits_per_minute"] == "1.1000"

    for body, param in (
        ({"phone_number_ids": ["pn_x"]}, "phone_number_ids"),
        ({"active_campaign_count": 3}, "active_campaign_count"),
        ({"template": "follow-up"}, "template"),
        ({"temperature": 1}, "temperature"),
    ):
        answer = client.patch(url, json=body, headers=tenant.headers)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["param"] == param

    # Clearing the first message switches to waiting for the caller
    answer = client.patch(url, json={"first_message": ""}, headers=tenant.headers)
    assert answer.json()["first_message_mode"] == "wait_for_caller"


def test_clone_copies_everything_but_numbers_and_counters(
    client: TestClient, tenant: Tenant
) -> None:
    # Given an assistant with secrets and a number assigned
    source = _create(client, tenant, template="inbound-support", tools=[SCHEDULING, WEBHOOK])
    assistant_store.add_phone_number(
        tenant.account_id, source["id"], "pn_01J00000000000000000000000"
    )

    # When it is cloned, once with a name and once without
    named = client.post(
        f"/v1/assistants/{source['id']}/clone", json={"name": "Night shift"}, headers=tenant.headers
    )
    unnamed = client.post(f"/v1/assistants/{source['id']}/clone", headers=tenant.headers)

    # Then the copies share the configuration (secrets included), not the numbers
    assert named.status_code == 201, named.text
    assert unnamed.status_code == 201, unnamed.text
    assert named.json()["name"] == "Night shift"
    assert unnamed.json()["name"] == "Inbound support (copy)"
    for copy in (named.json(), unnamed.json()):
        assert copy["id"] != source["id"]
        assert copy["phone_number_ids"] == []
        assert copy["active_campaign_count"] == 0
        assert copy["system_prompt"] == source["system_prompt"]
        assert copy["tools"] == source["tools"]
        record, _ = assistant_store.get(tenant.account_id, copy["id"])
        stored = record.model_dump(mode="json", context={"reveal_secrets": True})
        assert stored["tools"][0]["config"]["api_key"] == "cal_live_0123456789abcdef"


def test_list_is_newest_first_and_paginated(client: TestClient, tenant: Tenant) -> None:
    # Given five assistants
    ids = [_create(client, tenant, name=f"a{i}")["id"] for i in range(5)]

    # When listed two at a time
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["starting_after"] = cursor
        page = client.get("/v1/assistants", params=params, headers=tenant.headers).json()
        pages += 1
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if not cursor:
            break

    # Then every assistant comes once, newest first, in three pages
    assert seen == list(reversed(ids))
    assert pages == 3


def test_delete(client: TestClient, tenant: Tenant) -> None:
    created = _create(client, tenant)
    url = f"/v1/assistants/{created['id']}"
    answer = client.delete(url, headers=tenant.headers)
    assert answer.status_code == 200
    assert answer.json() == {"object": "assistant", "id": created["id"], "deleted": True}
    assert client.get(url, headers=tenant.headers).status_code == 404
    assert client.delete(url, headers=tenant.headers).status_code == 404


def test_delete_is_refused_while_a_number_is_assigned(client: TestClient, tenant: Tenant) -> None:
    # Given an assistant holding a number
    created = _create(client, tenant)
    url = f"/v1/assistants/{created['id']}"
    number = "pn_01J00000000000000000000001"
    assistant_store.add_phone_number(tenant.account_id, created["id"], number)
    assert client.get(url, headers=tenant.headers).json()["phone_number_ids"] == [number]

    # When deleted / Then 409, and it is still there
    answer = client.delete(url, headers=tenant.headers)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "assistant_in_use"
    assert number in answer.json()["error"]["message"]
    assert client.get(url, headers=tenant.headers).status_code == 200

    # And a PATCH in between does not drop the assignment
    client.patch(url, json={"name": "renamed"}, headers=tenant.headers)
    assert client.get(url, headers=tenant.headers).json()["phone_number_ids"] == [number]

    # When the number is unassigned / Then the delete goes through
    assistant_store.remove_phone_number(tenant.account_id, created["id"], number)
    assert client.delete(url, headers=tenant.headers).status_code == 200


def test_delete_is_refused_while_a_campaign_runs(client: TestClient, tenant: Tenant) -> None:
    created = _create(client, tenant, template="outbound-setter")
    url = f"/v1/assistants/{created['id']}"
    assistant_store.change_campaign_count(tenant.account_id, created["id"], +1)
    assert client.get(url, headers=tenant.headers).json()["active_campaign_count"] == 1
    assert client.delete(url, headers=tenant.headers).status_code == 409
    assistant_store.change_campaign_count(tenant.account_id, created["id"], -1)
    assert client.delete(url, headers=tenant.headers).status_code == 200


def test_links_are_kept_sane_by_the_store(client: TestClient, tenant: Tenant) -> None:
    created = _create(client, tenant)
    # Assigning the same number twice is one assignment; removing it twice is harmless
    for _ in range(2):
        assistant_store.add_phone_number(tenant.account_id, created["id"], "pn_1")
    record, _ = assistant_store.get(tenant.account_id, created["id"])
    assert record.phone_number_ids == ["pn_1"]
    for _ in range(2):
        assistant_store.remove_phone_number(tenant.account_id, created["id"], "pn_1")
    # The campaign count never goes below zero
    with pytest.raises(Conflict):
        assistant_store.change_campaign_count(tenant.account_id, created["id"], -1)
    # Nothing is linked to an assistant that does not exist
    with pytest.raises(NotFound):
        assistant_store.add_phone_number(
            tenant.account_id, "asst_01J00000000000000000000000", "pn_2"
        )


def test_a_stale_save_is_refused(client: TestClient, tenant: Tenant) -> None:
    # Given two writers that read the same version
    created = _create(client, tenant)
    record, version = assistant_store.get(tenant.account_id, created["id"])
    assistant_store.save(tenant.account_id, record.model_copy(update={"name": "first"}), version)
    # When the second saves over it / Then it is refused instead of losing the first write
    with pytest.raises(Conflict):
        assistant_store.save(
            tenant.account_id, record.model_copy(update={"name": "second"}), version
        )
    assert client.get(f"/v1/assistants/{created['id']}", headers=tenant.headers).json()["name"] == (
        "first"
    )


def test_estimate_before_save(client: TestClient, tenant: Tenant) -> None:
    # Given a partial configuration / When estimated / Then priced by layer, nothing saved
    answer = client.post(
        "/v1/assistants/estimate",
        json={
            "template": "inbound-support",
            "llm": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            "voice": {
                "provider": "elevenlabs",
                "model": "eleven_multilingual_v2",
                "voice_id": "21m00Tcm4TlvDq8ikWAM",
            },
            "transcriber": {"provider": "elevenlabs", "model": "scribe_v2_realtime"},
            "telephony": {"call_region": "ae"},
        },
        headers=tenant.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "object": "assistant_estimate",
        "estimated_credits_per_minute": "2.0000",
        "estimate_breakdown": {
            "telephony": "0.4000",
            "llm": "0.5000",
            "voice": "0.6000",
            "transcriber": "0.2000",
            "platform": "0.3000",
            "total": "2.0000",
        },
    }
    assert client.get("/v1/assistants", headers=tenant.headers).json()["data"] == []

    # And an invalid configuration is refused like a create would be
    answer = client.post(
        "/v1/assistants/estimate",
        json={"telephony": {"call_region": "mars"}},
        headers=tenant.headers,
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "telephony.call_region"


def test_catalog_and_templates_need_a_key(client: TestClient, tenant: Tenant) -> None:
    for path in ("/v1/catalog", "/v1/assistant-templates"):
        assert client.get(path).status_code == 401
    catalog = client.get("/v1/catalog", headers=tenant.headers).json()
    assert {p["id"] for p in catalog["llm"]} == {
        "openai",
        "anthropic",
        "google",
        "deepseek",
        "qwen",
        "kimi",
    }
    assert {r["id"] for r in catalog["telephony"]} == {"us", "eu", "ae"}
    templates = client.get("/v1/assistant-templates", headers=tenant.headers).json()["data"]
    assert [t["id"] for t in templates] == list(TEMPLATES)


def test_another_accounts_assistant_is_404_everywhere(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    # Given tenant's assistant
    created = _create(client, tenant)
    url = f"/v1/assistants/{created['id']}"

    # When the other account touches it in any way / Then it does not exist for them
    for method, path, body in (
        ("GET", url, None),
        ("PATCH", url, {"name": "mine now"}),
        ("DELETE", url, None),
        ("POST", f"{url}/clone", {}),
    ):
        answer = client.request(method, path, json=body, headers=other_tenant.headers)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["code"] == "resource_missing"
    assert client.get("/v1/assistants", headers=other_tenant.headers).json()["data"] == []

    # And the tenant's own cursor is refused on the other account's list
    _create(client, tenant)
    page = client.get("/v1/assistants", params={"limit": 1}, headers=tenant.headers).json()
    answer = client.get(
        "/v1/assistants",
        params={"limit": 1, "starting_after": page["next_cursor"]},
        headers=other_tenant.headers,
    )
    assert answer.status_code == 422

    # And nothing changed for the owner
    assert client.get(url, headers=tenant.headers).json()["name"] == created["name"]


def test_malformed_ids_are_404(client: TestClient, tenant: Tenant) -> None:
    for assistant_id in ("nope", "asst_x#ACCOUNT", "pn_01J00000000000000000000000"):
        answer = client.get(f"/v1/assistants/{assistant_id}", headers=tenant.headers)
        assert answer.status_code == 404, assistant_id


def test_idempotency_key_replays_the_first_answer(client: TestClient, tenant: Tenant) -> None:
    # Given a create sent twice with the same key
    headers = {**tenant.headers, "Idempotency-Key": "create-setter-1"}
    first = client.post("/v1/assistants", json={"template": "follow-up"}, headers=headers)
    second = client.post("/v1/assistants", json={"template": "follow-up"}, headers=headers)

    # Then one assistant exists and both answers are the same
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(client.get("/v1/assistants", headers=tenant.headers).json()["data"]) == 1

    # And the key cannot be reused for a different request
    reused = client.post("/v1/assistants", json={"template": "custom"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

    # And clones honour it too
    source = first.json()["id"]
    clone_headers = {**tenant.headers, "Idempotency-Key": "clone-1"}
    a = client.post(f"/v1/assistants/{source}/clone", json={}, headers=clone_headers)
    b = client.post(f"/v1/assistants/{source}/clone", json={}, headers=clone_headers)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] == b.json()["id"]
