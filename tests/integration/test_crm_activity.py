"""A contact's activity: an opt-out recorded with its do-not-call, once per call, read over
HTTP, gone with the contact, invisible to other accounts."""

from __future__ import annotations

from fastapi.testclient import TestClient

from talkturo.ids import new_id
from talkturo.services import contacts
from tests.conftest import Tenant
from tests.integration.test_crm_contacts import make_contact


def _activity(client: TestClient, tenant: Tenant, contact_id: str, query: str = "") -> dict:
    got = client.get(f"/v1/contacts/{contact_id}/activity{query}", headers=tenant.headers)
    assert got.status_code == 200, got.text
    return dict(got.json())


def test_an_opt_out_marks_dnc_with_one_activity_entry_per_call(
    client: TestClient, tenant: Tenant
) -> None:
    ada = make_contact(client, tenant, first_name="Ada", phone="+14155550123", tags=["vip"])
    assert _activity(client, tenant, ada["id"])["data"] == []
    first_call, second_call = new_id("call"), new_id("call")

    assert contacts.opt_out(tenant.account_id, ada["id"], call_id=first_call, detail="phrase")
    # The same call again (a phrase and the model's function, a retried write): nothing more.
    assert not contacts.opt_out(tenant.account_id, ada["id"], call_id=first_call, detail="tool")
    assert contacts.opt_out(tenant.account_id, ada["id"], call_id=second_call, detail="tool")

    after = client.get(f"/v1/contacts/{ada['id']}", headers=tenant.headers).json()
    assert after["do_not_call"] is True and after["lead_status"] == "dnc"
    assert after["tags"] == ["vip"]  # nothing else changed
    dnc = client.get("/v1/contacts?do_not_call=true", headers=tenant.headers).json()
    assert [c["id"] for c in dnc["data"]] == [ada["id"]]
    page = _activity(client, tenant, ada["id"])
    assert [(a["call_id"], a["detail"], a["type"]) for a in page["data"]] == [
        (second_call, "tool", "opted_out"),
        (first_call, "phrase", "opted_out"),
    ]
    first_page = _activity(client, tenant, ada["id"], "?limit=1")
    assert first_page["has_more"] is True
    rest = _activity(
        client, tenant, ada["id"], f"?limit=1&starting_after={first_page['next_cursor']}"
    )
    assert [a["call_id"] for a in rest["data"]] == [first_call] and rest["has_more"] is False


def test_activity_is_the_accounts_own_and_goes_with_the_contact(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    ada = make_contact(client, tenant, first_name="Ada", phone="+14155550124")
    call_id = new_id("call")
    contacts.opt_out(tenant.account_id, ada["id"], call_id=call_id, detail="phrase")
    hidden = client.get(f"/v1/contacts/{ada['id']}/activity", headers=other_tenant.headers)
    assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "id"

    assert client.delete(f"/v1/contacts/{ada['id']}", headers=tenant.headers).status_code == 200
    gone = client.get(f"/v1/contacts/{ada['id']}/activity", headers=tenant.headers)
    assert gone.status_code == 404
    # Nothing of it is left behind in the table.
    assert contacts.store.list_activity(
        tenant.account_id, ada["id"], limit=10, starting_after=None
    ) == ([], None)
