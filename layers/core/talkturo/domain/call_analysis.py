"""A call's analyses as stored and answered: each run of the analysis over a call is a numbered
version (the automatic one after the call is 1, each re-run the next), with what it wrote into
the CRM and how it differs from the version before. Background re-runs over many calls are
`AnalysisRun`s with progress. Pure: the post-call service reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from talkturo.domain.analysis import (
    STANDARD_FIELDS,
    AnalysisConfig,
    AnalysisResult,
    Evidence,
    ExtractionField,
    Target,
    WritePolicy,
)
from talkturo.domain.assistants import AssistantConfig
from talkturo.domain.common import Resource

AnalysisTrigger = Literal["call_ended", "reanalyze", "run"]
ChangeStatus = Literal[
    "written",  # the CRM field now holds the value
    "unchanged",  # it held that value already
    "kept",  # fill_if_empty: the field had a value, which stays
    "rejected",  # the analysis rejected the value (its reason is given)
    "abstained",  # nothing was said about it
    "field_missing",  # a custom field that does not exist and may not be created
    "no_record",  # the call has no contact (or company) to write to
]
AnalysisStatus = Literal["pending", "completed", "failed", "disabled"]


class FieldChange(BaseModel):
    """What one extraction field did to the CRM."""

    target: Target
    key: str
    status: ChangeStatus
    old: Any = None
    new: Any = None
    evidence: Evidence | None = None
    write_policy: WritePolicy = "fill_if_empty"
    field_created: bool = Field(
        default=False, description="The custom field was created for this value."
    )
    reason: str | None = None


class Difference(BaseModel):
    """A part of the analysis that differs from the version before."""

    path: str = Field(
        description="summary, success.passed, disposition, structured_data.<key>, "
        "extracted.<target>.<key> …"
    )
    before: Any = None
    after: Any = None


class CallAnalysis(AnalysisResult):
    object: Literal["call_analysis"] = "call_analysis"
    call_id: str
    version: int = Field(description="1 for the analysis after the call, then each re-run.")
    trigger: AnalysisTrigger
    run_id: str | None = Field(default=None, description="The background re-run it belongs to.")
    created_at: datetime
    crm_changes: list[FieldChange] = Field(
        default_factory=list,
        description="What each extraction field did to the contact or company: written (old → "
        "new, with the caller's words), kept, rejected … Filled once the CRM is written.",
    )
    crm_applied: bool = Field(default=False, description="The CRM writes are done.")
    differences: list[Difference] | None = Field(
        default=None, description="How it differs from the version before (none for version 1)."
    )


class AnalysisBrief(BaseModel):
    """The latest analysis, as the call record shows it."""

    status: AnalysisStatus
    version: int | None = None
    summary: str | None = None
    success: bool | None = Field(default=None, description="The success evaluation's verdict.")
    score: float | None = None
    disposition: str | None = None
    method: Literal["model", "offline"] | None = None
    fields_written: int = 0
    analyzed_at: datetime | None = None
    error: str | None = Field(default=None, description="failed: why.")
    pending_version: int | None = Field(
        default=None,
        description="A re-analysis asked for (POST /v1/calls/{id}/analyze) and not written yet.",
    )


def brief_of(analysis: CallAnalysis) -> AnalysisBrief:
    return AnalysisBrief(
        status="completed",
        version=analysis.version,
        summary=analysis.summary,
        success=analysis.success.passed,
        score=analysis.success.score,
        disposition=analysis.disposition,
        method=analysis.method,
        fields_written=sum(1 for change in analysis.crm_changes if change.status == "written"),
        analyzed_at=analysis.created_at,
    )


def _flat(analysis: AnalysisResult) -> dict[str, Any]:
    flat: dict[str, Any] = {
        "summary": analysis.summary,
        "success.passed": analysis.success.passed,
        "success.score": analysis.success.score,
        "success.reason": analysis.success.reason,
        "disposition": analysis.disposition,
        "model": analysis.model,
    }
    for key, value in (analysis.structured_data or {}).items():
        flat[f"structured_data.{key}"] = value
    for item in analysis.extracted:
        flat[f"extracted.{item.target}.{item.key}"] = (
            item.value if item.status == "accepted" else None
        )
    return flat


def differences(before: AnalysisResult, after: AnalysisResult) -> list[Difference]:
    """What changed from one version to the next, part by part (in a stable order)."""
    old, new = _flat(before), _flat(after)
    keys = list(dict.fromkeys([*old, *new]))
    return [
        Difference(path=key, before=old.get(key), after=new.get(key))
        for key in keys
        if old.get(key) != new.get(key)
    ]


# --------------------------------------------------------------------------- background re-runs

RunStatus = Literal["queued", "running", "completed", "failed"]


class AnalysisRunCreate(Resource):
    """Re-run the analysis over past calls of one assistant or one campaign."""

    assistant_id: str | None = Field(default=None, min_length=1, max_length=64)
    campaign_id: str | None = Field(default=None, min_length=1, max_length=64)
    created_after: datetime | None = Field(
        default=None, description="Only calls created at or after this time."
    )
    created_before: datetime | None = Field(
        default=None, description="Only calls created before this time."
    )

    @model_validator(mode="after")
    def _one_scope(self) -> AnalysisRunCreate:
        if (self.assistant_id is None) == (self.campaign_id is None):
            raise ValueError("give exactly one of assistant_id and campaign_id")
        return self


class AnalysisRun(BaseModel):
    object: Literal["analysis_run"] = "analysis_run"
    id: str
    status: RunStatus
    assistant_id: str | None = None
    campaign_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    calls_found: int = Field(default=0, description="Ended calls in scope, found so far.")
    calls_analyzed: int = 0
    calls_failed: int = 0
    listing_done: bool = Field(default=False, description="Every call in scope is found.")
    error: str | None = Field(default=None, description="failed: why.")
    created_at: datetime
    completed_at: datetime | None = None


# --------------------------------------------------------------------------- effective settings


def effective_config(assistant: AssistantConfig) -> tuple[AnalysisConfig, list[str]]:
    """The assistant's `analysis` block plus the fields of its enabled `info_extraction` tools
    (the block's own field wins when both name the same one; a tool that allows creating
    fields allows it for its fields); with a note for each tool field that cannot be used."""
    config = assistant.analysis
    fields = list(config.extraction_fields)
    seen = {(f.target, f.key) for f in fields}
    creatable = config.create_missing_fields
    notes: list[str] = []
    for tool in assistant.tools:
        if tool.type != "info_extraction" or not tool.enabled:
            continue
        target = tool.config.target
        for item in tool.config.fields:
            if (target, item.key) in seen:
                continue
            standard = item.key in STANDARD_FIELDS[target]
            try:
                field = ExtractionField(
                    target=target,
                    key=item.key,
                    description=item.description,
                    type=None if standard else item.type,
                    options=None if standard else item.options,
                )
            except ValidationError as error:
                reason = error.errors()[0]["msg"]
                notes.append(f"info_extraction field {target}.{item.key} not used: {reason}")
                continue
            if not standard and tool.config.allow_create_fields and not creatable:
                creatable = True
            fields.append(field)
            seen.add((target, item.key))
    return config.model_copy(
        update={"extraction_fields": fields, "create_missing_fields": creatable}
    ), notes
