"""`analyze`: one call's transcript in, its `AnalysisResult` out.

1. Was it a conversation? Voicemail, an IVR menu or no transcript: nothing is asked of a model
   and nothing is extracted; the summary says what happened and repeats nothing of a greeting.
   Fewer than two caller turns: the model summarises, nothing is extracted.
2. The language model (the analysis block's, else the assistant's) answers one structured
   request. Its answer is validated locally against the schema whatever the provider promised;
   an invalid answer gets one repair turn listing the errors; what still fails is left empty.
3. Every extracted value is checked: its quote must be the caller's words (`find_evidence`),
   its value must fit the field's type (`validate_value`) and be readable from the quote
   (`quote_problem`); otherwise it is rejected with the reason, never corrected or guessed.
4. With the local development model (no key for the provider) the analysis runs offline: a
   summary built by rules, success not evaluated, the deterministic extractor. It is labelled
   `method: offline`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from jsonschema import Draft202012Validator
from referencing import Registry

from talkturo.analysis.offline import (
    extract_offline,
    offline_disposition,
    offline_summary,
    skip_reason,
    skipped_summary,
)
from talkturo.analysis.prompt import (
    MAX_ANSWER_TOKENS,
    NO_DISPOSITION,
    Prompt,
    build_prompt,
    field_id,
    prompt_hash,
)
from talkturo.domain.analysis import (
    AnalysisConfig,
    AnalysisContext,
    AnalysisResult,
    ChecklistItem,
    Evidence,
    ExtractedValue,
    ExtractionField,
    SkipReason,
    SuccessEvaluation,
    Usage,
    field_spec,
    find_evidence,
    is_empty,
    quote_problem,
    validate_value,
)
from talkturo.voice.providers.base import (
    ChatMessage,
    LanguageModel,
    ProviderError,
    StructuredReply,
    StructuredRequest,
)

MAX_REPAIR_ERRORS = 10
QUOTE_NOT_SAID = "quote not said by the caller"


class Models(Protocol):
    """Makes the language model of a provider (`talkturo.voice.providers.registry.Providers`
    is one: it knows the keys, `LOCAL_LLM_BASE_URL` and the offline stand-in)."""

    def language_model(self, provider: str) -> LanguageModel: ...


async def analyze(
    config: AnalysisConfig,
    transcript_messages: Sequence[Any],
    context: AnalysisContext,
    *,
    models: Models | None = None,
) -> AnalysisResult:
    """The analysis of one ended call.

    `transcript_messages`: the call's transcript messages (`TranscriptMessage`s, or anything
    with `role` and `text`), in order; evidence turns index into it. Raises `ProviderError`
    when the model cannot be reached (`retryable` says whether trying later may help).
    """
    if models is None:
        from talkturo.voice.providers.registry import Providers

        models = Providers()
    messages = list(transcript_messages)
    chosen = config.model or context.llm
    language = config.summary_language or context.language
    skipped = skip_reason(messages, context)
    if skipped in ("voicemail", "ivr", "no_transcript"):
        return _not_a_conversation(config, messages, context, skipped, language)
    llm = models.language_model(chosen.provider)
    try:
        if getattr(llm, "provider", "") == "dev" or not hasattr(llm, "complete_structured"):
            return _offline(config, messages, context, skipped, language)
        return await _with_model(config, messages, context, skipped, language, llm)
    finally:
        close = getattr(llm, "aclose", None)
        if close is not None:
            await close()


# --------------------------------------------------------------------------- no conversation


def _not_evaluated(config: AnalysisConfig, reason: str) -> SuccessEvaluation:
    return SuccessEvaluation(rubric=config.success_rubric.type, passed=None, reason=reason)


def _not_a_conversation(
    config: AnalysisConfig,
    messages: list[Any],
    context: AnalysisContext,
    skipped: SkipReason,
    language: str,
) -> AnalysisResult:
    success = SuccessEvaluation(
        rubric=config.success_rubric.type,
        passed=False,
        reason=f"no conversation took place ({skipped.replace('_', ' ')})",
    )
    return AnalysisResult(
        summary=skipped_summary(skipped, messages, context),
        language="en",
        success=success,
        disposition=offline_disposition(config, messages, skipped),
        extracted=_all_abstained(config, f"not extracted: {skipped.replace('_', ' ')}"),
        method="offline",
        model=None,
        skipped_extraction_reason=skipped,
        prompt_hash=prompt_hash(config, context, None),
        warnings=[]
        if language == "en"
        else [f"summary in English, not {language}: built by rules"],
    )


def _all_abstained(config: AnalysisConfig, reason: str) -> list[ExtractedValue]:
    return [
        ExtractedValue(target=f.target, key=f.key, status="abstained", reason=reason)
        for f in config.extraction_fields
    ]


# --------------------------------------------------------------------------- offline


def _offline(
    config: AnalysisConfig,
    messages: list[Any],
    context: AnalysisContext,
    skipped: SkipReason | None,
    language: str,
) -> AnalysisResult:
    warnings = [
        "offline: the local development model stands in for the language model; the summary "
        "is built by rules from the transcript and the values by the deterministic extractor"
    ]
    if language.split("-")[0] != "en":
        warnings.append(f"summary in English, not {language}: built by rules")
    if skipped is not None:
        extracted = _all_abstained(config, f"not extracted: {skipped.replace('_', ' ')}")
    else:
        extracted = []
        for field in config.extraction_fields:
            spec = field_spec(field.target, field.key, context.custom_fields, field)
            found = extract_offline(field, spec, messages, context) if spec else None
            if found is None:
                extracted.append(_abstained(field, "not found in the caller's words"))
            else:
                extracted.append(_check(field, found[0], found[1], messages, context))
    return AnalysisResult(
        summary=offline_summary(messages, context),
        language="en",
        success=_not_evaluated(config, "not evaluated offline"),
        disposition=offline_disposition(config, messages, skipped),
        extracted=extracted,
        method="offline",
        model=None,
        skipped_extraction_reason=skipped,
        prompt_hash=prompt_hash(config, context, None),
        warnings=warnings,
    )


# --------------------------------------------------------------------------- with a model


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    # An empty registry: nothing may fetch a remote `$ref`.
    return Draft202012Validator(schema, registry=Registry())


def _errors(schema: dict[str, Any], value: Any) -> list[str]:
    problems = []
    for error in sorted(_validator(schema).iter_errors(value), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(root)"
        problems.append(f"{where}: {error.message}")
    return problems


def _drop_optional_nulls(value: Any, schema: Any) -> Any:
    """`value` without the nulls strict mode writes for optional keys (the original schema may
    not allow null there)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return {
            key: _drop_optional_nulls(item, properties.get(key))
            for key, item in value.items()
            if not (item is None and key not in required)
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_drop_optional_nulls(item, schema["items"]) for item in value]
    return value


async def _ask(llm: Any, prompt: Prompt, model: str) -> tuple[Any, list[str], Usage, list[str]]:
    """The model's answer (validated, or None) with its remaining errors, usage and warnings."""
    usage = Usage()
    warnings: list[str] = []
    messages: tuple[ChatMessage, ...] = (ChatMessage("user", prompt.user),)
    value: Any = None
    problems: list[str] = []
    for attempt in range(2):
        request = StructuredRequest(
            model=model,
            system_prompt=prompt.system,
            messages=messages,
            schema=prompt.schema,
            max_tokens=MAX_ANSWER_TOKENS,
        )
        reply: StructuredReply = await llm.complete_structured(request)
        usage.input_tokens += reply.input_tokens or 0
        usage.output_tokens += reply.output_tokens or 0
        value = reply.value
        if isinstance(value, dict) and "structured_data" in value:
            value["structured_data"] = _drop_optional_nulls(
                value["structured_data"], prompt.schema["properties"]["structured_data"]
            )
        if value is None:
            problems = [
                "the answer was cut short (token limit)"
                if reply.finish_reason == "length"
                else "the answer is not a JSON object"
            ]
        else:
            problems = _errors(prompt.schema, value)
        if not problems:
            return value, [], usage, warnings
        warnings.append(
            f"answer {attempt + 1} failed validation: " + "; ".join(problems[:MAX_REPAIR_ERRORS])
        )
        if reply.finish_reason == "refused":
            break
        messages = (
            *messages,
            ChatMessage("assistant", reply.text or "(empty)"),
            ChatMessage(
                "user",
                "Your answer does not match the required JSON schema:\n- "
                + "\n- ".join(problems[:MAX_REPAIR_ERRORS])
                + "\nAnswer again with the whole corrected JSON object only.",
            ),
        )
    return value, problems, usage, warnings


def _part(value: Any, key: str, schema: dict[str, Any]) -> Any:
    """One top-level part of an answer, if it is valid on its own; else None."""
    if not isinstance(value, dict) or key not in value:
        return None
    part = value[key]
    sub = schema["properties"].get(key)
    if sub is None or _errors(sub, part):
        return None
    return part


async def _with_model(
    config: AnalysisConfig,
    messages: list[Any],
    context: AnalysisContext,
    skipped: SkipReason | None,
    language: str,
    llm: Any,
) -> AnalysisResult:
    chosen = config.model or context.llm
    model_id = f"{llm.provider}/{chosen.model}" if llm.provider == "local" else None
    model_id = model_id or f"{chosen.provider}/{chosen.model}"
    extract = skipped is None
    prompt = build_prompt(config, messages, context, extract=extract)
    warnings = list(prompt.warnings)
    value, problems, usage, answer_warnings = await _ask(llm, prompt, chosen.model)
    warnings += answer_warnings
    if problems:
        warnings.append("parts of the answer that still failed validation were left empty")
    schema = prompt.schema

    summary = _part(value, "summary", schema)
    if not isinstance(summary, str) or not summary.strip():
        summary = offline_summary(messages, context)
        warnings.append("no usable summary in the answer: the summary is built by rules")
    success = _success(config, context, _part(value, "success", schema), warnings)
    disposition = _part(value, "disposition", schema) if config.dispositions else None
    if disposition == NO_DISPOSITION:
        disposition = None
    structured = None
    if config.structured_data_schema is not None:
        structured = _part(value, "structured_data", schema)
        if structured is None:
            warnings.append("structured data left empty: the answer did not match its schema")

    if extract:
        entries = value.get("extracted") if isinstance(value, dict) else None
        extracted = _extracted(
            config, entries if isinstance(entries, list) else [], messages, context
        )
    else:
        extracted = _all_abstained(config, f"not extracted: {str(skipped).replace('_', ' ')}")
    return AnalysisResult(
        summary=summary.strip(),
        language=language,
        success=success,
        structured_data=structured,
        disposition=disposition,
        extracted=extracted,
        method="model",
        model=model_id,
        skipped_extraction_reason=skipped,
        usage=usage,
        prompt_hash=prompt_hash(config, context, model_id),
        warnings=warnings,
    )


def _success(
    config: AnalysisConfig, context: AnalysisContext, answer: Any, warnings: list[str]
) -> SuccessEvaluation:
    rubric = config.success_rubric
    if not context.success_criteria.strip():
        return _not_evaluated(config, "no success criteria set on the assistant")
    if not isinstance(answer, dict):
        return _not_evaluated(config, "the model gave no valid evaluation")
    reason = " ".join(str(answer.get("reason", "")).split())[:300] or "no reason given"
    if rubric.type == "numeric_scale":
        score = answer.get("score")
        if not isinstance(score, int) or not rubric.min <= score <= rubric.max:
            warnings.append(
                f"success score {score!r} outside {rubric.min} to {rubric.max}: ignored"
            )
            return _not_evaluated(config, "the model's score was out of range")
        return SuccessEvaluation(
            rubric="numeric_scale",
            passed=score >= rubric.passing_score,
            score=score,
            reason=reason,
        )
    if rubric.type == "checklist":
        met = {item["item"]: bool(item["met"]) for item in answer.get("items", [])}
        checklist = [ChecklistItem(item=i, passed=met.get(i)) for i in rubric.items or []]
        if any(entry.passed is None for entry in checklist):
            warnings.append("the evaluation left checklist items out: they count as not met")
        count = sum(1 for entry in checklist if entry.passed)
        return SuccessEvaluation(
            rubric="checklist",
            passed=count >= rubric.items_to_pass,
            score=count,
            checklist=checklist,
            reason=reason,
        )
    return SuccessEvaluation(rubric="pass_fail", passed=bool(answer["passed"]), reason=reason)


def _extracted(
    config: AnalysisConfig, entries: list[Any], messages: list[Any], context: AnalysisContext
) -> list[ExtractedValue]:
    by_field: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("field"), str):
            by_field.setdefault(entry["field"], []).append(entry)
    out = []
    for field in config.extraction_fields:
        candidates = by_field.get(field_id(field), [])
        if not candidates:
            out.append(_abstained(field, "not said in the call"))
            continue
        results = [
            _check(field, entry.get("value"), entry.get("quote"), messages, context)
            for entry in candidates
        ]
        accepted = [r for r in results if r.status == "accepted"]
        # The last value the caller gave counts (a correction follows what it corrects).
        out.append(accepted[-1] if accepted else results[-1])
    return out


def _abstained(field: ExtractionField, reason: str) -> ExtractedValue:
    return ExtractedValue(target=field.target, key=field.key, status="abstained", reason=reason)


def _check(
    field: ExtractionField, raw: Any, quote: Any, messages: list[Any], context: AnalysisContext
) -> ExtractedValue:
    """One proposed value, accepted only with its evidence and a value its field accepts."""
    base = {"target": field.target, "key": field.key}
    if is_empty(raw):
        return ExtractedValue(**base, status="abstained", reason="empty value")
    if not isinstance(quote, str) or not quote.strip():
        return ExtractedValue(**base, status="rejected", reason="no quote of the caller's words")
    quote = " ".join(quote.split())[:500]
    turn = find_evidence(quote, messages)
    if turn is None:
        return ExtractedValue(
            **base, evidence=Evidence(quote=quote), status="rejected", reason=QUOTE_NOT_SAID
        )
    evidence = Evidence(quote=quote, turn=turn)
    spec = field_spec(field.target, field.key, context.custom_fields, field)
    if spec is None:
        return ExtractedValue(
            **base, evidence=evidence, status="rejected", reason="the field has no known type"
        )
    if isinstance(raw, str) and spec.type == "number":
        raw = raw.strip()
    try:
        value = validate_value(
            spec.type,
            spec.options,
            raw,
            context.call_date,
            format=spec.format,
            max_length=spec.max_length,
        )
    except ValueError as error:
        return ExtractedValue(
            **base, evidence=evidence, status="rejected", reason=f"{json.dumps(raw)} {error}"
        )
    problem = quote_problem(spec, value, quote, context.call_date)
    if problem is not None:
        return ExtractedValue(**base, evidence=evidence, status="rejected", reason=problem)
    return ExtractedValue(**base, value=value, evidence=evidence, status="accepted")


__all__ = ["Models", "ProviderError", "analyze"]
