"""What the analysing model is told and the shape its answer must have.

The answer is one JSON object: `summary`, `success` (its shape follows the rubric), `disposition`
(when labels are configured), `structured_data` (when a schema is configured) and `extracted`, a
list of `{field, value, quote}` (when fields are configured and the call was a conversation).
Values are strings whatever the field's type: the platform converts and checks them itself, so
the schema needs no unions and stays inside every provider's strict subset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from talkturo.domain.analysis import (
    WEEKDAYS,
    AnalysisConfig,
    AnalysisContext,
    ExtractionField,
    FieldSpec,
    field_spec,
)

# Bumped with any change of the wording below (it is part of the prompt hash anyway).
PROMPT_VERSION = 1
NO_DISPOSITION = "(none)"
# A long call is cut in the middle: the opening (who, why) and the end (what was agreed) stay.
MAX_TRANSCRIPT_CHARS = 24_000
HEAD_SHARE = 0.35
MAX_TOOL_TEXT = 300
MAX_ANSWER_TOKENS = 4000

LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ar": "Arabic",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "hi": "Hindi",
    "ru": "Russian",
    "tr": "Turkish",
    "pl": "Polish",
}

SYSTEM_TEMPLATE = """\
You analyse a finished phone call between an AI voice assistant and a caller, for the business \
that runs the assistant. The call took place on {call_date} ({weekday}). Resolve relative dates \
("tomorrow", "next Tuesday") against that date and write every date as YYYY-MM-DD; "next \
<weekday>" means the first such day after the call date unless the caller says otherwise.

Rules:
- Use only what the transcript says. Never invent names, numbers or facts.
- summary: one short paragraph in {language}: who called or was called, what the caller wanted, \
what was agreed or done (tools, bookings), how the call ended.
{success_rule}{disposition_rule}{structured_rule}{extraction_rule}Answer in JSON."""

EXTRACTION_RULE = """\
- extracted: one entry per field below that the CALLER actually said. `quote` must be the \
caller's exact words, copied from a CALLER line, that contain the value; `value` is the value \
as text (numbers as digits, dates as YYYY-MM-DD, booleans as true or false, a select field's \
option exactly as listed). If the caller corrected themself, give the corrected value and quote \
the correction. Leave a field out when it was not said; never guess; never take a value that \
only the assistant said and the caller did not repeat.
Fields:
{fields}
"""


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    schema: dict[str, Any]
    warnings: tuple[str, ...]
    field_ids: tuple[str, ...]


def field_id(field: ExtractionField) -> str:
    return f"{field.target}.{field.key}"


def language_name(code: str) -> str:
    base = code.split("-")[0].lower()
    name = LANGUAGE_NAMES.get(base)
    return f"{name} ({code})" if name else code


def _type_words(spec: FieldSpec) -> str:
    if spec.format == "email":
        return "an email address"
    if spec.format == "phone":
        return "a phone number"
    if spec.format == "url":
        return "a web address"
    if spec.format == "timezone":
        return "an IANA time zone such as America/New_York"
    if spec.type == "select":
        return "one of: " + ", ".join(spec.options or [])
    return {
        "text": "text",
        "number": "a number",
        "date": "a date, YYYY-MM-DD",
        "boolean": "true or false",
    }[spec.type]


def _success_rule(config: AnalysisConfig, criteria: str) -> str:
    if not criteria.strip():
        return ""
    rubric = config.success_rubric
    head = f"- success: judge the call against these success criteria: {criteria.strip()}\n"
    if rubric.type == "numeric_scale":
        how = (
            f"  Give `score`, a whole number from {rubric.min} (worst) to {rubric.max} (best), "
            "and a one-line `reason`.\n"
        )
    elif rubric.type == "checklist":
        items = "; ".join(rubric.items or [])
        how = (
            f"  For each checklist item say whether the call met it (`met`): {items}. Add a "
            "one-line `reason`.\n"
        )
    else:
        how = "  Say whether the call met them (`passed`) with a one-line `reason`.\n"
    return head + how


def success_schema(config: AnalysisConfig) -> dict[str, Any]:
    rubric = config.success_rubric
    reason = {"type": "string", "description": "One line."}
    if rubric.type == "numeric_scale":
        properties: dict[str, Any] = {"score": {"type": "integer"}, "reason": reason}
    elif rubric.type == "checklist":
        item = {
            "type": "object",
            "properties": {
                "item": {"type": "string", "enum": list(rubric.items or [])},
                "met": {"type": "boolean"},
            },
            "required": ["item", "met"],
            "additionalProperties": False,
        }
        properties = {"items": {"type": "array", "items": item}, "reason": reason}
    else:
        properties = {"passed": {"type": "boolean"}, "reason": reason}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def build_prompt(
    config: AnalysisConfig,
    messages: Sequence[Any],
    context: AnalysisContext,
    *,
    extract: bool,
) -> Prompt:
    """The system prompt, the transcript message and the answer's schema."""
    language = config.summary_language or context.language
    fields = list(config.extraction_fields) if extract else []
    properties: dict[str, Any] = {"summary": {"type": "string"}}
    criteria = context.success_criteria
    if criteria.strip():
        properties["success"] = success_schema(config)
    disposition_rule = ""
    if config.dispositions:
        labels = [*config.dispositions, NO_DISPOSITION]
        properties["disposition"] = {"type": "string", "enum": labels}
        disposition_rule = (
            "- disposition: the one label that best describes the outcome, from: "
            + ", ".join(config.dispositions)
            + f"; {NO_DISPOSITION} when none fits.\n"
        )
    structured_rule = ""
    if config.structured_data_schema is not None:
        properties["structured_data"] = config.structured_data_schema
        structured_rule = (
            "- structured_data: fill it from the call following its schema; leave out (or null) "
            "what was not said.\n"
        )
    extraction_rule = ""
    ids: list[str] = []
    if fields:
        lines = []
        for field in fields:
            spec = field_spec(field.target, field.key, context.custom_fields, field)
            kind = _type_words(spec) if spec is not None else "text"
            lines.append(f"  - {field_id(field)} ({kind}): {field.description}")
            ids.append(field_id(field))
        extraction_rule = EXTRACTION_RULE.format(fields="\n".join(lines))
        entry = {
            "type": "object",
            "properties": {
                "field": {"type": "string", "enum": ids},
                "value": {"type": "string"},
                "quote": {"type": "string"},
            },
            "required": ["field", "value", "quote"],
            "additionalProperties": False,
        }
        properties["extracted"] = {"type": "array", "items": entry}
    system = SYSTEM_TEMPLATE.format(
        call_date=context.call_date.isoformat(),
        weekday=WEEKDAYS[context.call_date.weekday()].capitalize(),
        language=language_name(language),
        success_rule=_success_rule(config, criteria),
        disposition_rule=disposition_rule,
        structured_rule=structured_rule,
        extraction_rule=extraction_rule,
    )
    transcript, warnings = render_transcript(messages)
    user = "Transcript (turn numbers are the message positions):\n" + transcript
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return Prompt(system, user, schema, tuple(warnings), tuple(ids))


def _line(index: int, message: Any) -> str | None:
    text = " ".join(str(message.text or "").split())
    role = message.role
    if role == "user":
        return f"[{index}] CALLER: {text}" if text else None
    if role == "assistant":
        calls = getattr(message, "tool_calls", None) or []
        called = "".join(f" (calls {call.name})" for call in calls)
        cut = " (interrupted)" if getattr(message, "interrupted", False) else ""
        return f"[{index}] ASSISTANT: {text}{cut}{called}" if text or called else None
    if role == "tool":
        name = getattr(message, "name", None) or "tool"
        short = text if len(text) <= MAX_TOOL_TEXT else text[:MAX_TOOL_TEXT] + " …"
        return f"[{index}] TOOL {name}: {short}"
    return f"[{index}] NOTE: {text}" if text else None


def render_transcript(messages: Sequence[Any]) -> tuple[str, list[str]]:
    """The transcript as numbered lines, bounded: a long one keeps its opening and its end."""
    lines = [(i, line) for i, m in enumerate(messages) if (line := _line(i, m)) is not None]
    total = sum(len(line) + 1 for _, line in lines)
    if total <= MAX_TRANSCRIPT_CHARS:
        return "\n".join(line for _, line in lines), []
    head_budget = int(MAX_TRANSCRIPT_CHARS * HEAD_SHARE)
    tail_budget = MAX_TRANSCRIPT_CHARS - head_budget
    head: list[tuple[int, str]] = []
    used = 0
    for item in lines:
        if used + len(item[1]) + 1 > head_budget:
            break
        head.append(item)
        used += len(item[1]) + 1
    tail: list[tuple[int, str]] = []
    used = 0
    for item in reversed(lines[len(head) :]):
        if used + len(item[1]) + 1 > tail_budget:
            break
        tail.insert(0, item)
        used += len(item[1]) + 1
    first_cut = head[-1][0] + 1 if head else 0
    last_cut = tail[0][0] - 1 if tail else len(messages) - 1
    marker = f"[… turns {first_cut} to {last_cut} left out: the call is long …]"
    text = "\n".join([*(line for _, line in head), marker, *(line for _, line in tail)])
    warning = (
        f"transcript truncated for the model: turns {first_cut} to {last_cut} of "
        f"{len(messages)} left out"
    )
    return text, [warning]


def prompt_hash(config: AnalysisConfig, context: AnalysisContext, model: str | None) -> str:
    """sha256 of what shapes an analysis: the prompt template and version, the analysis
    configuration, the success criteria, the custom field definitions and the model."""
    material = json.dumps(
        {
            "version": PROMPT_VERSION,
            "template": SYSTEM_TEMPLATE + EXTRACTION_RULE,
            "config": config.model_dump(mode="json"),
            "criteria": context.success_criteria,
            "fields": [f.model_dump(mode="json") for f in context.custom_fields],
            "model": model,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()
