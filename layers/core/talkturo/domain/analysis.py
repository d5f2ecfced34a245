"""Post-call analysis as data: what an assistant asks of it (`AnalysisConfig`, the assistant's
`analysis` block), what it answers (`AnalysisResult`), and the pure checks every extracted value
passes before it may reach the CRM.

- Fields to extract name a standard contact/company field or a custom field key; each value is
  checked against the field's type (`validate_value`), must come with the caller's own words
  (`find_evidence`: only user turns, compared without case, punctuation or spacing), and, where
  that can be checked, must be readable from those words (`quote_problem`: an email or phone
  number also in spoken form, "john at example dot com", "five five five …").
- Dates are anchored to the call's date in the account's time zone: "next Tuesday" is resolved
  against it (`date_candidates`), dates leave as ISO `YYYY-MM-DD`.

No I/O here: the engine (`talkturo.analysis`) calls the models, the post-call worker writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from talkturo.domain.accounts import is_timezone
from talkturo.domain.common import Resource
from talkturo.domain.custom_fields import KEY_PATTERN, MAX_TEXT, FieldType, check_options
from talkturo.domain.phones import InvalidPhone, normalise_phone

# Bumped whenever AnalysisResult changes shape, so stored results can be told apart.
SCHEMA_VERSION = 1

Target = Literal["contact", "company"]
WritePolicy = Literal["fill_if_empty", "overwrite"]
FieldFormat = Literal["email", "phone", "url", "timezone"]
ExtractionStatus = Literal["accepted", "rejected", "abstained"]
SkipReason = Literal["voicemail", "ivr", "too_few_caller_turns", "no_transcript"]
Method = Literal["model", "offline"]

MAX_DISPOSITIONS = 20
MAX_EXTRACTION_FIELDS = 30
MAX_CHECKLIST_ITEMS = 20
MAX_SCHEMA_BYTES = 16_000
MAX_QUOTE = 500
MAX_REASON = 300


# --------------------------------------------------------------------------- the fields


class FieldSpec(BaseModel):
    """What a field accepts: its type, its options (select), a format some text fields keep
    (email, phone, url, timezone) and a length bound for text."""

    type: FieldType
    options: list[str] | None = None
    format: FieldFormat | None = None
    max_length: int = MAX_TEXT


def _text(max_length: int = 200, format: FieldFormat | None = None) -> FieldSpec:
    return FieldSpec(type="text", max_length=max_length, format=format)


# Lead statuses an analysis may set; do-not-call is only ever set by the caller's own opt-out.
EXTRACTABLE_LEAD_STATUSES = ["new", "contacted", "qualified", "unqualified", "customer", "churned"]

STANDARD_FIELDS: dict[Target, dict[str, FieldSpec]] = {
    "contact": {
        "first_name": _text(100),
        "last_name": _text(100),
        "email": _text(320, "email"),
        "secondary_phone": _text(40, "phone"),
        "job_title": _text(200),
        "notes": _text(10_000),
        "timezone": _text(64, "timezone"),
        "lead_status": FieldSpec(type="select", options=EXTRACTABLE_LEAD_STATUSES),
    },
    "company": {
        "website": _text(500, "url"),
        "industry": _text(200),
        "size": _text(50),
        "address": _text(1000),
        "notes": _text(10_000),
    },
}
# Fields of the CRM that an analysis never writes, with the reason given when one is asked for.
RESERVED_FIELDS: dict[Target, dict[str, str]] = {
    "contact": {
        "phone": "the contact's phone is the number called; extract secondary_phone instead",
        "do_not_call": "do-not-call is only set by the caller's opt-out",
        "full_name": "extract first_name and last_name",
        "company_id": "the company link is not extracted",
        "company_name": "the company link is not extracted",
        "tags": "tags are not extracted",
        "source": "the source is not extracted",
        "custom": "name the custom field's key itself",
    },
    "company": {
        "name": "a company's name is its identity and is not extracted",
        "phone": "a company's phone is not extracted",
        "country": "a company's country is not extracted",
        "custom": "name the custom field's key itself",
    },
}


class KnownField(BaseModel):
    """An existing custom field definition, as the analysis needs it."""

    target: Target
    key: str
    type: FieldType
    options: list[str] | None = None


def field_spec(
    target: Target,
    key: str,
    custom: Iterable[KnownField] = (),
    declared: ExtractionField | None = None,
) -> FieldSpec | None:
    """The spec of `target.key`: a standard field's own, an existing custom definition's, or the
    one an extraction field declares (a custom field not created yet); None when unknown."""
    standard = STANDARD_FIELDS[target].get(key)
    if standard is not None:
        return standard
    for known in custom:
        if known.target == target and known.key == key:
            return FieldSpec(type=known.type, options=known.options)
    if declared is not None and declared.type is not None:
        return FieldSpec(type=declared.type, options=declared.options)
    return None


class ExtractionField(Resource):
    """One value to listen for during the call and write into the CRM afterwards."""

    target: Target = Field(default="contact", description="contact (default) or company.")
    key: str = Field(
        min_length=1,
        max_length=64,
        description="A standard field (contact: first_name, last_name, email, secondary_phone, "
        "job_title, notes, timezone, lead_status; company: website, industry, size, address, "
        "notes) or a custom field key (snake_case).",
    )
    description: str = Field(
        min_length=1, max_length=500, description="What to listen for (the model reads it)."
    )
    type: FieldType | None = Field(
        default=None,
        description="text, number, date, boolean or select. Standard fields have their own type; "
        "required for a custom field that does not exist yet.",
    )
    options: list[str] | None = Field(
        default=None,
        max_length=100,
        validate_default=True,
        description="The options of a select field; required when it does not exist yet, "
        "else a subset of its options.",
    )
    write_policy: WritePolicy = Field(
        default="fill_if_empty",
        description="fill_if_empty (default): only written when the field has no value; "
        "overwrite: replaces it. An empty value never overwrites.",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str, info: ValidationInfo) -> str:
        if not KEY_PATTERN.match(value):
            raise ValueError(
                "must be snake_case: a lowercase letter, then lowercase letters, digits or _"
            )
        target = info.data.get("target", "contact")
        reserved = RESERVED_FIELDS.get(target, {}).get(value)
        if reserved is not None:
            raise ValueError(f"{target}.{value} cannot be extracted: {reserved}")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: FieldType | None, info: ValidationInfo) -> FieldType | None:
        target, key = info.data.get("target", "contact"), info.data.get("key")
        standard = STANDARD_FIELDS.get(target, {}).get(key or "")
        if standard is not None and value is not None and value != standard.type:
            raise ValueError(
                f"{target}.{key} is a standard field of type {standard.type}; leave type out"
            )
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        target, key = info.data.get("target", "contact"), info.data.get("key")
        if value is None:
            return None  # an existing select field has its options (see analysis_issues)
        if key in STANDARD_FIELDS.get(target, {}):
            raise ValueError(f"{target}.{key} is a standard field with its own values")
        if info.data.get("type") != "select":
            raise ValueError("only select fields have options")
        return check_options(value)

    @property
    def standard(self) -> bool:
        return self.key in STANDARD_FIELDS[self.target]


class SuccessRubric(Resource):
    """How the success criteria (the assistant's `success_criteria`) are judged."""

    type: Literal["pass_fail", "numeric_scale", "checklist"] = Field(
        default="pass_fail",
        description="pass_fail (default), numeric_scale (a score from min to max, passed at "
        "pass_at) or checklist (each item met or not).",
    )
    min: int = Field(default=1, ge=0, le=100, description="numeric_scale: the lowest score.")
    max: int = Field(default=10, ge=1, le=100, description="numeric_scale: the highest score.")
    pass_at: int | None = Field(
        default=None, description="numeric_scale: the lowest passing score (default: max)."
    )
    items: list[str] | None = Field(
        default=None,
        validate_default=True,
        max_length=MAX_CHECKLIST_ITEMS,
        description="checklist: what the call must achieve, one item each.",
    )
    pass_count: int | None = Field(
        default=None,
        ge=1,
        description="checklist: items that must be met to pass (default: all of them).",
    )

    @field_validator("max")
    @classmethod
    def _max(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and value <= low:
            raise ValueError("must be greater than min")
        return value

    @field_validator("pass_at")
    @classmethod
    def _pass_at(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        if info.data.get("type") != "numeric_scale":
            raise ValueError("only for a numeric_scale rubric")
        low, high = info.data.get("min"), info.data.get("max")
        if low is not None and high is not None and not low <= value <= high:
            raise ValueError(f"must be between min ({low}) and max ({high})")
        return value

    @field_validator("items")
    @classmethod
    def _items(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            if info.data.get("type") == "checklist":
                raise ValueError("a checklist rubric needs its items")
            return None
        if info.data.get("type") != "checklist":
            raise ValueError("only for a checklist rubric")
        cleaned = [" ".join(item.split()) for item in value]
        if not cleaned or any(not item for item in cleaned):
            raise ValueError("needs at least one item, none empty")
        if any(len(item) > 300 for item in cleaned):
            raise ValueError("an item is at most 300 characters")
        if len({item.casefold() for item in cleaned}) != len(cleaned):
            raise ValueError("items must be unique")
        return cleaned

    @field_validator("pass_count")
    @classmethod
    def _pass_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        items = info.data.get("items")
        if info.data.get("type") != "checklist":
            raise ValueError("only for a checklist rubric")
        if items is not None and value > len(items):
            raise ValueError(f"must be at most the number of items ({len(items)})")
        return value

    @property
    def passing_score(self) -> int:
        return self.max if self.pass_at is None else self.pass_at

    @property
    def items_to_pass(self) -> int:
        return len(self.items or []) if self.pass_count is None else self.pass_count


class AnalysisModel(Resource):
    """A language model for the analysis (provider and model, as in the assistant's `llm`)."""

    provider: str
    model: str


Label = str


def structured_data_schema(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (Draft 2020-12) of type object, bounded, referencing nothing outside."""
    from talkturo.domain.assistant_tools import function_parameters

    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise ValueError("must be plain JSON") from None
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"must be at most {MAX_SCHEMA_BYTES} bytes of JSON")
    return function_parameters(value)


class AnalysisConfig(Resource):
    """The assistant's `analysis` block: what happens to a call after it ends."""

    enabled: bool = Field(default=True, description="Analyse every ended call (default).")
    model: AnalysisModel | None = Field(
        default=None, description="The model that analyses (default: the assistant's llm)."
    )
    summary_language: str | None = Field(
        default=None,
        min_length=2,
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description="A language tag such as en or pt-BR (default: the call's language).",
    )
    success_rubric: SuccessRubric = Field(default_factory=SuccessRubric)
    structured_data_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema (Draft 2020-12, type object) the analysis fills from the "
        f"call; at most {MAX_SCHEMA_BYTES} bytes.",
    )
    dispositions: list[Label] = Field(
        default_factory=list,
        max_length=MAX_DISPOSITIONS,
        description="Outcome labels (booked, callback, not_interested …); the analysis picks "
        "one, or none when none fits.",
    )
    extraction_fields: list[ExtractionField] = Field(
        default_factory=list, max_length=MAX_EXTRACTION_FIELDS
    )
    create_missing_fields: bool = Field(
        default=False,
        description="Create a custom field that does not exist yet (it then needs its type).",
    )

    @field_validator("structured_data_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else structured_data_schema(value)

    @field_validator("dispositions")
    @classmethod
    def _dispositions(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(label.split()) for label in value]
        for index, label in enumerate(cleaned):
            if not label or len(label) > 100:
                raise ValueError(f"[{index}] must be 1 to 100 characters")
        folded = [label.casefold() for label in cleaned]
        for index, label in enumerate(folded):
            if label in folded[:index]:
                raise ValueError(f"[{index}] {cleaned[index]!r} is listed twice")
        return cleaned

    @field_validator("extraction_fields")
    @classmethod
    def _unique_fields(cls, value: list[ExtractionField]) -> list[ExtractionField]:
        seen: set[tuple[str, str]] = set()
        for index, item in enumerate(value):
            if (item.target, item.key) in seen:
                raise ValueError(f"[{index}] {item.target}.{item.key} is listed twice")
            seen.add((item.target, item.key))
        return value


def analysis_issues(
    config: AnalysisConfig, custom: Iterable[KnownField] = (), *, prefix: str = "analysis"
) -> Iterator[tuple[str, str]]:
    """What an analysis block asks that the account's fields refuse, as (param, message):
    a custom field that does not exist (and may not be created, or has no type), or one whose
    declared type or options disagree with its definition."""
    known = {(field.target, field.key): field for field in custom}
    for index, item in enumerate(config.extraction_fields):
        param = f"{prefix}.extraction_fields[{index}]"
        if item.standard:
            continue
        existing = known.get((item.target, item.key))
        if existing is None:
            if not config.create_missing_fields:
                yield (
                    f"{param}.key",
                    f"no {item.target} custom field {item.key!r}; create it first or set "
                    f"{prefix}.create_missing_fields",
                )
            elif item.type is None:
                yield (
                    f"{param}.type",
                    f"required: {item.target} custom field {item.key!r} does not exist yet",
                )
            elif item.type == "select" and item.options is None:
                yield (
                    f"{param}.options",
                    f"required: select field {item.key!r} does not exist yet",
                )
            continue
        if item.type is not None and item.type != existing.type:
            yield f"{param}.type", f"the custom field {item.key!r} is of type {existing.type}"
        if item.options is not None:
            allowed = {option.casefold() for option in existing.options or []}
            extra = [option for option in item.options if option.casefold() not in allowed]
            if extra:
                yield f"{param}.options", f"not options of {item.key!r}: {', '.join(extra)}"


# --------------------------------------------------------------------------- the context


class AnalysisContext(BaseModel):
    """What the analysis knows of the call besides its transcript."""

    call_date: date = Field(description="The call's date in the account's time zone.")
    language: str = Field(default="en", description="The call's language (the transcriber's).")
    llm: AnalysisModel = Field(description="The assistant's language model (the default).")
    success_criteria: str = ""
    direction: Literal["inbound", "outbound"] | None = None
    outcome: str | None = Field(default=None, description="answered, voicemail, no_answer …")
    answered_by: Literal["human", "machine", "unknown"] | None = None
    ended_reason: str | None = None
    custom_fields: list[KnownField] = Field(
        default_factory=list, description="The account's existing custom field definitions."
    )
    voicemail_message_left: bool | None = Field(
        default=None, description="Whether the assistant left its voicemail message."
    )


# --------------------------------------------------------------------------- the result


class Evidence(BaseModel):
    quote: str = Field(description="The caller's words the value came from.")
    turn: int | None = Field(
        default=None,
        description="Index of the caller's message in the transcript's messages; none when the "
        "quote was not found there.",
    )


class ExtractedValue(BaseModel):
    target: Target
    key: str
    value: Any = Field(
        default=None, description="Canonical for the field's type; none unless accepted."
    )
    evidence: Evidence | None = None
    status: ExtractionStatus
    reason: str | None = Field(default=None, description="Why rejected or abstained.")


class ChecklistItem(BaseModel):
    item: str
    passed: bool | None


class SuccessEvaluation(BaseModel):
    rubric: Literal["pass_fail", "numeric_scale", "checklist"]
    passed: bool | None = Field(description="none: not evaluated.")
    score: float | None = None
    checklist: list[ChecklistItem] | None = None
    reason: str = Field(description="One line.")


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class AnalysisResult(BaseModel):
    summary: str
    language: str
    success: SuccessEvaluation
    structured_data: dict[str, Any] | None = None
    disposition: str | None = None
    extracted: list[ExtractedValue] = Field(default_factory=list)
    method: Method = Field(
        description="model: a language model analysed the call; offline: the deterministic "
        "summary and extractor of the local platform."
    )
    model: str | None = Field(default=None, description='"provider/model", or none offline.')
    skipped_extraction_reason: SkipReason | None = None
    usage: Usage = Field(default_factory=Usage)
    schema_version: int = SCHEMA_VERSION
    prompt_hash: str = Field(description="sha256 of the prompt template and the configuration.")
    warnings: list[str] = Field(default_factory=list)

    def accepted(self) -> list[ExtractedValue]:
        return [item for item in self.extracted if item.status == "accepted"]


# --------------------------------------------------------------------------- evidence


class _Message(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def text(self) -> str: ...


def normalise_words(text: str) -> str:
    """Lowercase words separated by single spaces: case, accents' composition, punctuation
    and spacing do not count."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", folded).split())


def find_evidence(quote: str, messages: Sequence[_Message]) -> int | None:
    """The index of the caller's (role user) message that says `quote`, or None.

    Words are compared normalised (`normalise_words`), whole words only; a quote may run over
    two consecutive caller messages (a transcriber's split). Assistant, tool and system text
    never count."""
    wanted = normalise_words(quote)
    if not wanted:
        return None
    padded = f" {wanted} "
    said = [
        normalise_words(message.text) if message.role == "user" else None for message in messages
    ]
    for index, text in enumerate(said):
        if text is not None and padded in f" {text} ":
            return index
    for index in range(len(said) - 1):
        first, second = said[index], said[index + 1]
        if first is not None and second is not None:
            joined = f" {first} {second} "
            if padded in joined and not padded.startswith(f" {second} "):
                return index
    return None


# --------------------------------------------------------------------------- spoken forms

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_REPEAT = {"double": 2, "triple": 3}


def spoken_digits(text: str) -> str:
    """The digits a text reads out, in order: numerals, digit words ("five five five", "oh"),
    "double five". Other words are skipped."""
    out: list[str] = []
    repeat = 1
    for word in re.findall(r"[a-z]+|\d+", text.casefold()):
        if word in _REPEAT:
            repeat = _REPEAT[word]
            continue
        if word.isdigit():
            out.append(word[0] * repeat + word[1:])
        elif word in _DIGIT_WORDS and (word != "o" or out):
            out.append(_DIGIT_WORDS[word] * repeat)
        repeat = 1
    return "".join(out)


_EMAIL_WORDS = (
    (r"\s+(?:at)\s+", "@"),
    (r"\s+(?:dot|period)\s+", "."),
    (r"\s*(?:underscore)\s*", "_"),
    (r"\s+(?:dash|hyphen)\s+", "-"),
    (r"\s+(?:plus)\s+", "+"),
)


def spoken_email_text(text: str) -> str:
    """`text` with spoken email words written out ("john at example dot com" becomes
    "john@example.com"), lowercased, spaces inside letter-by-letter spelling removed."""
    out = f" {text.casefold()} "
    out = re.sub(r"\bat sign\b", " at ", out)
    for pattern, symbol in _EMAIL_WORDS:
        out = re.sub(pattern, symbol, out)
    # "j o h n@..." spelled letter by letter: join runs of single letters.
    out = re.sub(r"(?<=\s)(\w)\s+(?=\w\b)", r"\1", out)
    # A transcriber that runs "mike at yahoo dot com" together writes "mikeatyahoo.com": the
    # first "at" after three letters or more of such a word is the @ ("whatsapp.com" stays).
    out = _GLUED_AT.sub(r"\1@\2", out)
    return " ".join(out.split())


_GLUED_AT = re.compile(
    r"(?<![\w@.])([a-z][a-z0-9._]+?[a-z0-9])at([a-z0-9\-]{2,}(?:\.[a-z]{2,})+)\b"
)


_EMAIL = re.compile(r"[a-z0-9][a-z0-9._%+\-]*@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}")


def emails_in(text: str) -> list[str]:
    """Email addresses a text contains, written or spoken."""
    found = _EMAIL.findall(text.casefold())
    for email in _EMAIL.findall(spoken_email_text(text)):
        if email not in found:
            found.append(email)
    return [email.rstrip(".-") for email in found]


_UNIT_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TEN_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_UNITS = {word: value for value, word in enumerate(_UNIT_WORDS)}
_TENS = {word: 10 * (index + 2) for index, word in enumerate(_TEN_WORDS)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def numbers_in(text: str) -> list[float]:
    """Numbers a text says: numerals ("1,200", "3.5", "20k") and number words ("twenty five",
    "two hundred and fifty", "a dozen")."""
    found: list[float] = []
    lowered = text.casefold()
    for match in re.finditer(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(k\b)?", lowered):
        number = float(match.group(1).replace(",", ""))
        found.append(number * 1000 if match.group(2) else number)
    total, current, active = 0, 0, False
    for word in [*re.findall(r"[a-z]+", lowered), ""]:
        if word in _UNITS:
            current += _UNITS[word]
            active = True
        elif word in _TENS:
            current += _TENS[word]
            active = True
        elif word == "hundred" and active:
            current = max(current, 1) * 100
        elif word in ("thousand", "million") and active:
            total += max(current, 1) * _SCALES[word]
            current = 0
        elif word == "dozen":
            found.append(float(max(current, 1) * 12 + total))
            total, current, active = 0, 0, False
        elif word == "and" and active:
            continue
        else:
            if active:
                found.append(float(total + current))
            total, current, active = 0, 0, False
    return found


# --------------------------------------------------------------------------- dates

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"


def _month_number(word: str) -> int:
    return next(i for i, name in enumerate(MONTHS, start=1) if name.startswith(word[:3]))


def _ordinal_day(text: str) -> str:
    # "the twenty first" → "21", "fifth" → "5".
    def tens_unit(match: re.Match[str]) -> str:
        return str(_TENS[match.group(1)] + _ORDINALS[match.group(2)])

    text = re.sub(
        r"\b(twenty|thirty)[\s-](first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)\b",
        tens_unit,
        text,
    )
    return re.sub(r"\b(" + "|".join(_ORDINALS) + r")\b", lambda m: str(_ORDINALS[m.group(1)]), text)


def _upcoming(call_date: date, day: int, month: int) -> date | None:
    for year in (call_date.year, call_date.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= call_date:
            return candidate
    return None


def date_candidates(text: str, call_date: date) -> list[date]:
    """The dates a phrase may mean, said on `call_date`, most likely first; [] when it names none.

    today, tomorrow, the day after tomorrow, yesterday; a weekday ("Tuesday", "this Tuesday":
    the first one after the call date; "next Tuesday": that one, or the one a week later);
    "in 3 days", "in two weeks", "next week" (its Monday); "March 5th", "the 5th of March",
    "5/3" is not read (day and month order differ); ISO dates ("2026-03-05"). A month and day
    without a year is the next such date on or after the call date.
    """
    lowered = _ordinal_day(" ".join(text.casefold().replace(",", " ").split()))
    found: list[date] = []

    def add(*candidates: date | None) -> None:
        for candidate in candidates:
            if candidate is not None and candidate not in found:
                found.append(candidate)

    for match in re.finditer(r"\b(\d{4})-(\d{2})-(\d{2})\b", lowered):
        with contextlib.suppress(ValueError):
            add(date(int(match[1]), int(match[2]), int(match[3])))
    if re.search(r"\bday after tomorrow\b", lowered):
        add(call_date + timedelta(days=2))
    elif re.search(r"\btomorrow\b", lowered):
        add(call_date + timedelta(days=1))
    if re.search(r"\btoday\b|\btonight\b|\bthis (?:morning|afternoon|evening)\b", lowered):
        add(call_date)
    if re.search(r"\byesterday\b", lowered):
        add(call_date - timedelta(days=1))
    for match in re.finditer(r"\b(next|this|coming)?\s*(" + "|".join(WEEKDAYS) + r")\b", lowered):
        ahead = (WEEKDAYS.index(match[2]) - call_date.weekday()) % 7 or 7
        first = call_date + timedelta(days=ahead)
        if match[1] == "next":
            add(first, first + timedelta(days=7))
        else:
            add(first)
    for match in re.finditer(
        r"\bin (a|an|one|two|three|four|five|six|\d+) (day|week)s?\b", lowered
    ):
        count = 1 if match[1] in ("a", "an") else int(_UNITS.get(match[1], match[1]))
        add(call_date + timedelta(days=count * (7 if match[2] == "week" else 1)))
    if re.search(r"\bnext week\b", lowered):
        add(call_date + timedelta(days=7 - call_date.weekday()))
    for match in re.finditer(_MONTH + r"\s+(?:the\s+)?" + _DAY + r"(?:\s+(\d{4}))?\b", lowered):
        add(_dated(call_date, int(match[2]), _month_number(match[1]), match[3]))
    for match in re.finditer(
        r"\b" + _DAY + r"\s+(?:of\s+)?" + _MONTH + r"(?:\s+(\d{4}))?\b", lowered
    ):
        add(_dated(call_date, int(match[1]), _month_number(match[2]), match[3]))
    return found


def _dated(call_date: date, day: int, month: int, year: str | None) -> date | None:
    if year is None:
        return _upcoming(call_date, day, month)
    try:
        return date(int(year), month, day)
    except ValueError:
        return None


# --------------------------------------------------------------------------- values

_TRUE = frozenset({"true", "yes", "y", "yeah", "yep", "1"})
_FALSE = frozenset({"false", "no", "n", "nope", "0"})
_EARLIEST = date(1900, 1, 1)


def is_empty(value: Any) -> bool:
    """A value that says nothing: none, blank text, an empty list or object."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | dict) and not value


def validate_value(
    field_type: FieldType,
    options: Sequence[str] | None,
    value: Any,
    call_date: date,
    *,
    format: FieldFormat | None = None,
    max_length: int = MAX_TEXT,
) -> Any:
    """`value` in the canonical form of its field, or ValueError saying what is expected.

    text: trimmed, at most `max_length` characters (emails, phone numbers, URLs and time
    zones checked and normalised); number: a finite JSON number (numeric text read); date:
    an ISO date, or a phrase resolved against `call_date` ("next Tuesday"), out as YYYY-MM-DD;
    boolean: true/false or yes/no; select: one of `options` whatever its case, in the option's
    own spelling (never a stand-in such as "other").
    """
    if is_empty(value):
        raise ValueError("is empty")
    if field_type == "text":
        return _text_value(value, format, max_length)
    if field_type == "number":
        return _number_value(value)
    if field_type == "date":
        return _date_value(value, call_date)
    if field_type == "boolean":
        if isinstance(value, bool):
            return value
        word = value.strip().casefold() if isinstance(value, str) else None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("must be true or false")
    if isinstance(value, str):
        wanted = " ".join(value.split()).casefold()
        for option in options or ():
            if option.casefold() == wanted:
                return option
    raise ValueError(f"must be one of: {', '.join(options or ())}")


def _text_value(value: Any, format: FieldFormat | None, max_length: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be text")
    text = " ".join(str(value).split())
    if len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    if format == "email":
        found = emails_in(text)
        if len(found) != 1:
            raise ValueError("must be one email address")
        from email_validator import EmailNotValidError, validate_email

        try:
            return validate_email(found[0], check_deliverability=False).normalized
        except EmailNotValidError as error:
            raise ValueError(f"is not a valid email address: {error}") from None
    if format == "phone":
        if len(spoken_digits(text)) < 7:
            raise ValueError("is not a phone number")
        try:
            return normalise_phone(spoken_digits(text) if text[:1] != "+" else text)
        except InvalidPhone as error:
            raise ValueError(str(error)) from None
    if format == "timezone":
        if not is_timezone(text):
            raise ValueError("must be an IANA time zone such as America/New_York")
        return text
    if format == "url":
        url = text if re.match(r"^https?://", text, re.IGNORECASE) else f"https://{text}"
        if not re.fullmatch(r"https?://[a-z0-9.\-]+\.[a-z]{2,}(?::\d+)?(?:/\S*)?", url, re.I):
            raise ValueError("must be a web address such as https://example.com")
        return url
    return text


def _number_value(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            raise ValueError("must be a number") from None
    else:
        raise ValueError("must be a number")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _date_value(value: Any, call_date: date) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a date as YYYY-MM-DD")
    text = value.strip()
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        candidates = date_candidates(text, call_date)
        if not candidates:
            raise ValueError("must be a date as YYYY-MM-DD") from None
        parsed = candidates[0]
    if parsed < _EARLIEST or parsed.year > call_date.year + 50:
        raise ValueError("is not a plausible date")
    return parsed.isoformat()


def quote_problem(spec: FieldSpec, value: Any, quote: str, call_date: date) -> str | None:
    """Why `value` (canonical) cannot have come from `quote`, where that can be checked, or None.

    An email must be readable from the quote (written or spoken); a phone number's digits
    must be said (a country code may be left out); a number must be among the numbers the
    quote says, when it says any; a date must be one the quote can mean, when it names one."""
    if spec.format == "email":
        if str(value).casefold() not in [email.casefold() for email in emails_in(quote)]:
            return "the email is not what the caller said"
        return None
    if spec.format == "phone":
        said, digits = spoken_digits(quote), re.sub(r"\D", "", str(value))
        tails = [digits[-k:] for k in range(len(digits), max(len(digits) - 4, 6), -1)]
        if not any(tail in said for tail in tails):
            return "the phone number is not what the caller said"
        return None
    if spec.type == "number":
        said_numbers = numbers_in(quote)
        if said_numbers and not any(math.isclose(float(value), n) for n in said_numbers):
            return "the number is not what the caller said"
        return None
    if spec.type == "date":
        candidates = date_candidates(quote, call_date)
        if candidates and date.fromisoformat(str(value)) not in candidates:
            return "the date is not one the caller's words can mean"
        return None
    return None
