"""Emails as an offline transcriber writes them, read by the offline extractor.

Whisper runs "mike at yahoo dot com" together ("mikeatyahoo.com") and mishears the words
around an address ("email me at anagmail.com", "David at www.me.com"): the first is read as the
address, the others leave the field empty rather than fill it with a wrong one.
"""

from __future__ import annotations

import pytest

from benchmarks.spoken_emails import CONFIG, CONTEXT, _call
from talkturo.analysis.offline import extract_offline
from talkturo.domain.analysis import emails_in, field_spec


@pytest.mark.parametrize(
    "heard, email",
    [
        ("That would be mikeatyahoo.com.", "mike@yahoo.com"),
        ("My email address is RobertatGoogle.com.", "robert@google.com"),
        ("It is john.smithatgmail.com.", "john.smith@gmail.com"),
        ("Send it to Tomatexample.org.", "tom@example.org"),
        ("It's jane at example dot io.", "jane@example.io"),
        ("Sure, my address is maria at yahoo dot co dot uk.", "maria@yahoo.co.uk"),
    ],
)
def test_an_address_run_together_or_spoken_is_read(heard: str, email: str) -> None:
    assert _extracted(heard) == email


@pytest.mark.parametrize(
    "heard",
    [
        "Email me at anagmail.com. Thanks.",  # "me" is no mailbox
        "You can email me at all of you at outlook.com.",
        "My work email is will in the at example.com",
        "Please use David at www.me.com.",  # an address has no www. domain
        "My email is Rachel at atme.eagle.",  # no such ending
        "I found you on whatsapp.com.",  # "at" inside a word after fewer than three letters
    ],
)
def test_misheard_words_leave_the_email_empty(heard: str) -> None:
    assert _extracted(heard) is None


def test_a_word_with_at_inside_is_no_address_unless_three_letters_lead() -> None:
    assert emails_in("whatsapp.com and chatgpt.com") == []
    assert emails_in("patatexample.com") == ["pat@example.com"]


def _extracted(heard: str) -> str | None:
    (field,) = CONFIG.extraction_fields
    spec = field_spec(field.target, field.key, [], field)
    assert spec is not None
    found = extract_offline(field, spec, _call(heard), CONTEXT)
    return None if found is None else str(found[0])
