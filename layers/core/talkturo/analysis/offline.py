"""What the analysis can say without a language model: whether the call was a conversation at
all (voicemail, IVR, too few caller turns), a summary built by rules from the transcript, and a
deterministic extractor that reads only the caller's words and returns evidence or abstains.

The extractor reads: emails (also spoken, "john at example dot com"), phone numbers (digits or
digit words), numbers and dates (relative day names anchored to the call date) in a caller turn
about the field, select options named in such a turn, yes/no answers to the assistant's question
about a boolean field, "my name is …" for names, and web addresses. A turn is "about the field"
when it, or the assistant's turn just before it, shares a word with the field's key or
description. Anything else it leaves empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from talkturo.domain.analysis import (
    AnalysisConfig,
    AnalysisContext,
    ExtractionField,
    FieldSpec,
    SkipReason,
    date_candidates,
    emails_in,
    normalise_words,
    numbers_in,
    spoken_digits,
    spoken_email_text,
)

VOICEMAIL_PHRASES = (
    "leave a message",
    "leave your message",
    "leave me a message",
    "after the tone",
    "after the beep",
    "at the tone",
    "voicemail",
    "voice mail",
    "mailbox",
    "not available to take your call",
    "unable to take your call",
    "can't take your call",
    "cannot take your call",
    "can t take your call",
    "record your message",
)
IVR_PHRASES = (
    "press 1",
    "press one",
    "press 2",
    "press two",
    "press 0",
    "press zero",
    "press the pound",
    "para español",
    "para espanol",
    "your call is important",
    "please hold",
    "please stay on the line",
    "main menu",
    "menu options have changed",
    "dial by name",
    "if you know your party's extension",
    "if you know your party s extension",
    "extension",
    "for sales",
    "for support",
    "for billing",
)
_STOPWORDS = frozenset(
    (
        "the", "a", "an", "and", "or", "of", "to", "for", "in", "on", "at", "by", "with", "from",
        "what", "which", "when", "where", "who", "whom", "whose", "how", "is", "are", "was",
        "were", "be", "been", "their", "there", "they", "them", "this", "that", "these", "those",
        "your", "you", "our", "we", "it", "its", "if", "any", "caller", "callers", "call",
        "contact", "company", "wants", "want", "would", "like", "said", "says", "say", "asked",
        "ask", "about", "into", "than", "then", "also", "only", "just", "give", "gives", "given"
    )
)  # fmt: skip
_YES = ("yes", "yeah", "yep", "yup", "sure", "correct", "absolutely", "definitely", "of course")
_NO = ("no", "nope", "not really", "nah", "negative")
_NAME_INTRO = re.compile(
    r"\b(?:my name is|my name's|name is|this is|i am|i'm)\s+"
    r"([A-Z][a-zA-Z'\-]+)(?:\s+([A-Z][a-zA-Z'\-]+))?"
)
_NOT_NAMES = frozenset(
    (
        "calling", "just", "here", "sorry", "fine", "good", "great", "well", "not", "interested",
        "busy", "the", "a", "an", "so", "really", "very", "happy", "glad", "looking", "ok", "okay",
        "yes", "no", "hi", "hello"
    )
)  # fmt: skip
_DOMAIN = re.compile(
    r"\b((?:[a-z0-9\-]+\.)+(?:com|org|net|io|co|ai|dev|app|biz|info|us|uk|de|fr))\b"
)
ENDINGS = {
    "caller_hung_up": "The caller hung up.",
    "assistant_ended": "The assistant ended the call.",
    "transferred": "The call was transferred.",
    "max_duration": "The call reached its maximum duration.",
    "no_credits": "The call ended because the account ran out of credits.",
    "silence_timeout": "The call ended after a long silence.",
    "voicemail": "The call reached voicemail.",
    "no_answer": "Nobody answered.",
    "busy": "The line was busy.",
    "failed": "The call failed.",
    "canceled": "The call was canceled before it connected.",
    "timeout": "The call timed out.",
    "error": "The call ended on an error.",
}


def _said(messages: Sequence[Any]) -> list[tuple[int, str]]:
    return [(i, str(m.text)) for i, m in enumerate(messages) if m.role == "user" and m.text]


def _has_phrase(text: str, phrases: Sequence[str]) -> bool:
    words = f" {normalise_words(text)} "
    return any(f" {normalise_words(p)} " in words for p in phrases)


def skip_reason(messages: Sequence[Any], context: AnalysisContext) -> SkipReason | None:
    """Why nothing may be extracted from this call, or None when it was a conversation."""
    if not any(str(m.text or "").strip() for m in messages):
        return "no_transcript"
    if context.outcome == "voicemail" or context.answered_by == "machine":
        return "voicemail"
    caller = _said(messages)
    if caller and len(caller) <= 3 and _has_phrase(caller[0][1], VOICEMAIL_PHRASES):
        return "voicemail"
    ivr = [text for _, text in caller if _has_phrase(text, IVR_PHRASES)]
    if ivr and len(ivr) * 2 >= len(caller):
        return "ivr"
    if len(caller) < 2:
        return "too_few_caller_turns"
    return None


def skipped_summary(reason: SkipReason, messages: Sequence[Any], context: AnalysisContext) -> str:
    """What happened on a call that was not a conversation, without a word of any greeting."""
    direction = {"outbound": "Outbound call", "inbound": "Inbound call"}.get(
        context.direction or "", "Call"
    )
    if reason == "no_transcript":
        if context.outcome in ("no_answer", "busy", "failed"):
            return f"{direction}: {ENDINGS[context.outcome]} Nothing was said."
        return f"{direction} with no transcript: nothing was said."
    if reason == "voicemail":
        left = context.voicemail_message_left
        if left is None:
            left = any(m.role == "assistant" and str(m.text or "").strip() for m in messages)
        if left:
            return f"{direction} reached voicemail; the assistant left a message."
        return f"{direction} reached voicemail; no message was left."
    if reason == "ivr":
        return f"{direction} reached an automated phone menu (IVR); no person was reached."
    return (
        f"{direction}: the caller said almost nothing. "
        + ENDINGS.get(context.ended_reason or "", "").strip()
    )


def _short(text: str, words: int = 20) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def offline_summary(messages: Sequence[Any], context: AnalysisContext) -> str:
    """A factual summary built by rules: who spoke, what the caller asked, tools used, bookings,
    how it ended. English only."""
    direction = {"outbound": "Outbound call", "inbound": "Inbound call"}.get(
        context.direction or "", "Call"
    )
    caller = _said(messages)
    assistant_turns = sum(1 for m in messages if m.role == "assistant" and m.text)
    parts = [f"{direction} with {len(caller)} caller and {assistant_turns} assistant turns."]
    questions = [text for _, text in caller if "?" in text]
    if questions:
        parts.append(f'The caller asked: "{_short(questions[0])}"')
    elif caller:
        parts.append(f'The caller first said: "{_short(caller[0][1])}"')
    tools: list[str] = []
    booked = False
    for m in messages:
        for call in getattr(m, "tool_calls", None) or []:
            if call.name not in tools:
                tools.append(call.name)
        if m.role == "tool" and (getattr(m, "name", "") or "") == "book_meeting":
            booked = booked or "error" not in str(m.text).casefold()
    if tools:
        parts.append("Tools used: " + ", ".join(tools) + ".")
    if booked:
        parts.append("A meeting was booked.")
    ending = ENDINGS.get(context.ended_reason or "")
    if ending:
        parts.append(ending)
    return " ".join(parts)


def offline_disposition(
    config: AnalysisConfig, messages: Sequence[Any], skipped: SkipReason | None
) -> str | None:
    """A label only where a rule makes it evident: voicemail, or a booking made."""
    wanted: str | None = None
    if skipped == "voicemail":
        wanted = "voicemail"
    elif any(
        m.role == "tool"
        and (getattr(m, "name", "") or "") == "book_meeting"
        and "error" not in str(m.text).casefold()
        for m in messages
    ):
        wanted = "book"
    if wanted is None:
        return None
    return next((label for label in config.dispositions if wanted in label.casefold()), None)


# --------------------------------------------------------------------------- the extractor


def _stem(word: str) -> str:
    return word[:5] if len(word) > 5 else word


def field_words(field: ExtractionField) -> set[str]:
    words = normalise_words(field.key.replace("_", " ") + " " + field.description).split()
    return {_stem(w) for w in words if len(w) > 2 and w not in _STOPWORDS}


def _about(text: str, words: set[str]) -> bool:
    return bool({_stem(w) for w in normalise_words(text).split()} & words)


def _turns_about(messages: Sequence[Any], words: set[str]) -> Iterator[tuple[int, str, str | None]]:
    """Caller turns about the field (or answering the assistant about it), with the
    assistant's turn before each."""
    previous: str | None = None
    for index, message in enumerate(messages):
        if message.role == "assistant" and message.text:
            previous = str(message.text)
        elif message.role == "user" and message.text:
            text = str(message.text)
            if _about(text, words) or (previous is not None and _about(previous, words)):
                yield index, text, previous


Found = tuple[Any, str]  # (raw value, quote)


def extract_offline(
    field: ExtractionField, spec: FieldSpec, messages: Sequence[Any], context: AnalysisContext
) -> Found | None:
    """The caller's value for `field` with the words it came from, the last one said (a
    correction wins), or None."""
    caller = _said(messages)
    found: Found | None = None
    if spec.format == "email":
        for _, text in caller:
            emails = [email for email in emails_in(text) if _plausible_email(email)]
            if emails:
                found = (emails[-1], text)
        return found
    if spec.format == "phone":
        for _, text in caller:
            if len(spoken_digits(text)) >= 10:
                found = (spoken_digits(text), text)
        return found
    if spec.format == "url":
        for _, text in caller:
            spoken = spoken_email_text(text)
            domains = [d for d in _DOMAIN.findall(spoken) if f"@{d}" not in spoken]
            if domains:
                found = (domains[-1], text)
        return found
    if field.key in ("first_name", "last_name") and field.target == "contact":
        for _, text in caller:
            match = _NAME_INTRO.search(text)
            if match and match.group(1).casefold() not in _NOT_NAMES:
                first, last = match.group(1), match.group(2)
                if last is not None and last.casefold() in _NOT_NAMES:
                    last = None
                value = first if field.key == "first_name" else last
                if value:
                    found = (value, text)
        return found
    words = field_words(field)
    if spec.type == "number":
        for _, text, _previous in _turns_about(messages, words):
            numbers = [n for n in numbers_in(text) if not _looks_like_date_or_time(text, n)]
            if len(numbers) == 1:
                found = (numbers[0], text)
        return found
    if spec.type == "date":
        for _, text, _previous in _turns_about(messages, words):
            candidates = date_candidates(text, context.call_date)
            if candidates:
                found = (candidates[0].isoformat(), text)
        return found
    if spec.type == "select":
        for _, text, _previous in _turns_about(messages, words):
            said = f" {normalise_words(text)} "
            named = [o for o in spec.options or [] if f" {normalise_words(o)} " in said]
            if len(named) == 1:
                found = (named[0], text)
        return found
    if spec.type == "boolean":
        for _, text, previous in _turns_about(messages, words):
            if previous is None or "?" not in previous or not _about(previous, words):
                continue
            answer = _yes_no(text)
            if answer is not None:
                found = (answer, text)
        return found
    return None


# What a mistaken transcript most often puts before an " at ": "email me at …", "all of you at …".
_NOT_MAILBOXES = frozenset(
    [
        "me",
        "you",
        "us",
        "him",
        "her",
        "it",
        "them",
        "the",
        "a",
        "an",
        "all",
        "this",
        "that",
        "my",
        "your",
        "our",
        "email",
        "mail",
        "address",
        "at",
    ]
)
# Top-level domains the offline extractor accepts: the common generic ones and any two-letter
# country code; another ending is more often a word heard wrong ("atme.eagle") than an address.
_GENERIC_TLDS = frozenset(
    [
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "mil",
        "int",
        "io",
        "ai",
        "app",
        "dev",
        "co",
        "biz",
        "info",
        "me",
        "tv",
        "us",
        "uk",
        "ca",
        "de",
        "fr",
        "au",
        "in",
    ]
)


def _plausible_email(email: str) -> bool:
    """Whether an address read from a transcript looks like one a caller gave: not a pronoun
    or an article before the @, no `www.` domain, a known kind of ending."""
    mailbox, _, domain = email.partition("@")
    tld = domain.rsplit(".", 1)[-1]
    if mailbox in _NOT_MAILBOXES or domain.startswith("www."):
        return False
    return tld in _GENERIC_TLDS or len(tld) == 2


def _yes_no(text: str) -> bool | None:
    words = normalise_words(text)
    if any(words == p or words.startswith(p + " ") for p in _NO):
        return False
    if any(words == p or words.startswith(p + " ") for p in _YES):
        return True
    return None


def _looks_like_date_or_time(text: str, number: float) -> bool:
    lowered = text.casefold()
    value = int(number) if number.is_integer() else None
    if value is None:
        return False
    return bool(
        re.search(rf"\b{value}\s*(?:am|pm|o'clock|oclock|st|nd|rd|th)\b", lowered)
        or re.search(rf"\b{value}:\d\d\b", lowered)
    )
