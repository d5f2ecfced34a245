"""A contact's stored document: written the short way, the same text as the long way."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from talkturo.domain.contacts import LEAD_STATUSES, Contact
from talkturo.store.contacts import _doc, _doc_the_long_way

_TEXT = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12),  # control characters too
    st.sampled_from(["Zoë", "\ud800", "a\u2028b", "\x7f", 'quote " and \\ slash /']),
)
_WHEN = st.one_of(st.datetimes(), st.datetimes(timezones=st.just(UTC)))
_CUSTOM = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    max_size=3,
)


@st.composite
def _contacts(draw: st.DrawFn) -> Contact:
    fields: dict[str, Any] = {
        name: draw(_TEXT)
        for name in (
            "first_name",
            "last_name",
            "email",
            "phone",
            "secondary_phone",
            "job_title",
            "company_id",
            "company_name",
            "timezone",
            "source",
            "notes",
        )
    }
    return Contact(
        id=draw(st.text(min_size=1, max_size=8)),
        lead_status=draw(st.sampled_from(LEAD_STATUSES)),
        do_not_call=draw(st.booleans()),
        tags=draw(st.lists(st.text(max_size=6), max_size=3)),
        custom=draw(st.one_of(st.just({}), _CUSTOM)),
        created_at=draw(_WHEN),
        updated_at=draw(_WHEN),
        status_before_dnc=draw(st.one_of(st.none(), st.sampled_from(LEAD_STATUSES))),
        **fields,
    )


@settings(max_examples=500, deadline=None)
@given(contact=_contacts())
def test_a_contacts_document_is_the_long_ways_text(contact: Contact) -> None:
    # Given any contact / When its document is written / Then the text the long way writes
    assert _doc(contact) == _doc_the_long_way(contact)
