"""Contact rules: do-not-call as one truth, tags, search tokens, filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError

from talkturo.domain.contacts import (
    MAX_TAGS,
    Contact,
    ContactCreate,
    ContactFilters,
    ContactUpdate,
    Email,
    normalise_tags,
    resolve_dnc,
    retired_search_tokens,
    search_prefix,
    search_tokens,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def contact(**fields: Any) -> Contact:
    return Contact.model_validate({"id": "ct_1", "created_at": NOW, "updated_at": NOW, **fields})


def test_new_contact_defaults_to_new_and_callable() -> None:
    assert resolve_dnc(None, None, None) == ("new", False, None)


@pytest.mark.parametrize(
    ("status", "dnc", "expected"),
    [
        ("dnc", None, ("dnc", True, "new")),
        (None, True, ("dnc", True, "new")),
        ("qualified", True, ("dnc", True, "qualified")),  # DNC wins, status kept for later
        ("dnc", False, ("dnc", True, "new")),  # a contradiction: DNC wins
        ("customer", None, ("customer", False, None)),
    ],
)
def test_creating_sets_both_faces_of_dnc(status: Any, dnc: Any, expected: Any) -> None:
    assert resolve_dnc(None, status, dnc) == expected


def test_setting_the_flag_sets_the_status_and_remembers_the_old_one() -> None:
    # Given a qualified contact / When do_not_call is set / Then status dnc, qualified held
    assert resolve_dnc(contact(lead_status="qualified"), None, True) == ("dnc", True, "qualified")


def test_setting_the_status_sets_the_flag() -> None:
    assert resolve_dnc(contact(lead_status="contacted"), "dnc", None) == (
        "dnc",
        True,
        "contacted",
    )


def test_clearing_the_flag_restores_the_status_held() -> None:
    current = contact(lead_status="dnc", do_not_call=True, status_before_dnc="qualified")
    assert resolve_dnc(current, None, False) == ("qualified", False, None)


def test_clearing_without_a_held_status_gives_new() -> None:
    current = contact(lead_status="dnc", do_not_call=True)
    assert resolve_dnc(current, None, False) == ("new", False, None)


def test_another_status_lifts_dnc() -> None:
    current = contact(lead_status="dnc", do_not_call=True, status_before_dnc="qualified")
    assert resolve_dnc(current, "customer", None) == ("customer", False, None)


def test_setting_dnc_again_keeps_the_status_held() -> None:
    current = contact(lead_status="dnc", do_not_call=True, status_before_dnc="qualified")
    assert resolve_dnc(current, "dnc", True) == ("dnc", True, "qualified")


def test_nothing_given_changes_nothing() -> None:
    current = contact(lead_status="dnc", do_not_call=True, status_before_dnc="churned")
    assert resolve_dnc(current, None, None) == ("dnc", True, "churned")


@pytest.mark.parametrize(
    ("status", "dnc"),
    [("new", None), ("qualified", None), (None, False), ("customer", False), ("dnc", False)],
)
def test_what_may_not_lift_dnc_leaves_it_as_it_was(status: Any, dnc: Any) -> None:
    # Given a DNC contact that was qualified
    current = contact(lead_status="dnc", do_not_call=True, status_before_dnc="qualified")
    # When a change that would lift DNC comes from where it may not (a CSV import)
    # Then DNC and the held status stay
    assert resolve_dnc(current, status, dnc, may_lift=False) == ("dnc", True, "qualified")


def test_what_may_not_lift_dnc_may_still_set_it_and_change_a_callable_status() -> None:
    callable_ = contact(lead_status="contacted")
    assert resolve_dnc(callable_, None, True, may_lift=False) == ("dnc", True, "contacted")
    assert resolve_dnc(callable_, "dnc", None, may_lift=False) == ("dnc", True, "contacted")
    assert resolve_dnc(callable_, "customer", False, may_lift=False) == (
        "customer",
        False,
        None,
    )
    # And on a DNC contact, DNC with a status to come back to still records that status
    dnc = contact(lead_status="dnc", do_not_call=True, status_before_dnc="new")
    assert resolve_dnc(dnc, "customer", True, may_lift=False) == ("dnc", True, "customer")


def test_the_held_status_is_stored_but_never_shown() -> None:
    shown = contact(lead_status="dnc", do_not_call=True, status_before_dnc="qualified")
    assert "status_before_dnc" not in shown.model_dump()


def test_tags_are_folded_deduplicated_and_bounded() -> None:
    assert normalise_tags([" VIP ", "vip", "Big  Deal", ""]) == ["vip", "big deal"]
    with pytest.raises(ValueError, match="at most"):
        normalise_tags([f"t{i}" for i in range(MAX_TAGS + 1)])
    with pytest.raises(ValueError, match="characters"):
        normalise_tags(["x" * 51])


def test_a_contact_needs_a_name_an_email_or_a_phone() -> None:
    with pytest.raises(ValidationError, match="at least a name"):
        ContactCreate.model_validate({"job_title": "CEO"})
    assert ContactCreate.model_validate({"email": "a@example.com"}).email == "a@example.com"


@pytest.mark.parametrize("field", ["phone", "secondary_phone"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_phone_means_none(field: str, blank: str) -> None:
    # Given an empty phone field / When a create or an update is read
    created = ContactCreate.model_validate({"first_name": "Ada", field: blank})
    updated = ContactUpdate.model_validate({field: blank})
    # Then it is None, and for an update still given (so that it clears the stored number)
    assert getattr(created, field) is None
    assert getattr(updated, field) is None
    assert field in updated.model_fields_set


def test_an_empty_phone_is_no_one_to_call() -> None:
    with pytest.raises(ValidationError, match="at least a name"):
        ContactCreate.model_validate({"phone": ""})


@pytest.mark.parametrize("field", ["lead_status", "do_not_call", "tags", "custom"])
def test_an_update_cannot_null_what_always_has_a_value(field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ContactUpdate.model_validate({field: None})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_search_tokens_cover_names_email_and_phone_digits() -> None:
    tokens = search_tokens(
        contact(
            first_name="Ada", last_name="Love  Lace", email="Ada@Example.com", phone="+14155550123"
        )
    )
    # (every prefix of "ada" is one of "ada love lace": no token of the first name alone)
    assert tokens == {
        "love lace",
        "ada love lace",
        "ada@example.com",
        "14155550123",
        "4155550123",
    }
    assert retired_search_tokens(contact(first_name="Ada", last_name="Lace")) == {"ada"}


@pytest.mark.parametrize(
    ("first", "last", "tokens"),
    [("Ada", None, {"ada"}), (None, "Lace", {"lace"}), ("Ada", "Lace", {"ada lace", "lace"})],
)
def test_a_name_alone_is_a_token_and_two_names_make_one_more(
    first: str | None, last: str | None, tokens: set[str]
) -> None:
    found = search_tokens(contact(first_name=first, last_name=last))
    assert found == tokens
    assert all(any(t.startswith(p) for t in found) for p in ("a", "ad", "ada") if first)
    assert retired_search_tokens(contact(first_name=first, last_name=last)) == (
        {"ada"} if first and last else set()
    )


@pytest.mark.parametrize(
    ("q", "prefix"),
    [
        ("  ADA ", "ada"),
        ("(415) 555", "415555"),
        ("+1 415-555", "1415555"),
        ("12", "12"),
        ("Ada  Love", "ada love"),
    ],
)
def test_a_query_becomes_a_prefix(q: str, prefix: str) -> None:
    assert search_prefix(q) == prefix


def test_filters_match_every_given_condition() -> None:
    ada = contact(first_name="Ada", company_id="co_1", tags=["vip"], lead_status="qualified")
    assert ContactFilters(company_id="co_1", tag="VIP", q="ad", lead_status="qualified").matches(
        ada
    )
    assert ContactFilters(do_not_call=False).matches(ada)
    assert not ContactFilters(company_id="co_2").matches(ada)
    assert not ContactFilters(tag="cold").matches(ada)
    assert not ContactFilters(q="da").matches(ada)
    assert not ContactFilters(do_not_call=True).matches(ada)


def test_a_status_contradicting_the_dnc_filter_matches_nothing() -> None:
    assert ContactFilters(lead_status="qualified", do_not_call=True).impossible
    assert ContactFilters(lead_status="dnc", do_not_call=False).impossible
    assert not ContactFilters(lead_status="dnc", do_not_call=True).impossible


def _checked(adapter: TypeAdapter[Any], value: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as invalid:
        return invalid.errors()


_EMAILISH = st.one_of(
    st.emails(),
    st.emails().map(lambda email: f" {email.upper()} "),
    st.emails().map(lambda email: f"Some One <{email}>"),
    st.text(max_size=30),
    st.text(alphabet='ab@.-_ +<>"\\\n', max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(value=_EMAILISH)
def test_a_contacts_email_is_checked_as_pydantics_email_str(value: str) -> None:
    # Given any text / When checked as a contact's email, twice (the second answer is the kept
    # one) / Then what pydantic's EmailStr answers: the same address, or the same errors
    theirs = _checked(TypeAdapter(EmailStr), value)
    ours = TypeAdapter(Email)
    assert _checked(ours, value) == theirs
    assert _checked(ours, value) == theirs


def test_a_contacts_email_is_an_email_in_the_schema() -> None:
    assert TypeAdapter(Email).json_schema() == TypeAdapter(EmailStr).json_schema()
    schema = ContactCreate.model_json_schema()["properties"]["email"]
    assert {"type": "string", "format": "email"} in schema["anyOf"]
