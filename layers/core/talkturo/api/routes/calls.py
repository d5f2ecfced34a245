"""Calls: place one outbound call now, list calls with filters, read one, its transcript and
recording, and its post-call analyses (read, re-run)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.call_analysis import CallAnalysis
from talkturo.domain.calls import (
    Call,
    CallCreate,
    CallDirection,
    CallOutcome,
    RecordingLink,
    Transcript,
)
from talkturo.domain.common import IsoDateTime, Page
from talkturo.services import analyses, calls

router = APIRouter(tags=["Calls"])

IdFilter = Annotated[str | None, Query(max_length=64)]


@router.post(
    "/calls",
    responses=errors_at(402, 404),
    response_model=Call,
    status_code=201,
    summary="Place one outbound call now (answers at once with status queued)",
)
def create_call(caller: Caller, body: CallCreate, idempotency_key: IdempotencyKey = None) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/calls",
        body=body,
        work=lambda: calls.create_outbound(caller.account_id, body),
    )


@router.get("/calls", response_model=Page[Call], summary="List calls, newest first")
def list_calls(
    caller: Caller,
    paging: Paging,
    assistant_id: IdFilter = None,
    phone_number_id: IdFilter = None,
    contact_id: IdFilter = None,
    campaign_id: IdFilter = None,
    direction: CallDirection | None = None,
    outcome: CallOutcome | None = None,
    created_after: Annotated[
        IsoDateTime | None,
        Query(description="ISO 8601 date-time or date (UTC without an offset); at or after."),
    ] = None,
    created_before: Annotated[
        IsoDateTime | None,
        Query(description="ISO 8601 date-time or date (UTC without an offset); at or before."),
    ] = None,
) -> Page[Call]:
    return calls.list_calls(
        caller.account_id,
        limit=paging.limit,
        starting_after=paging.starting_after,
        assistant_id=assistant_id,
        phone_number_id=phone_number_id,
        contact_id=contact_id,
        campaign_id=campaign_id,
        direction=direction,
        outcome=outcome,
        created_after=created_after,
        created_before=created_before,
    )


@router.get("/calls/{call_id}", response_model=Call, summary="A call")
def get_call(caller: Caller, call_id: str) -> Call:
    return calls.get(caller.account_id, call_id)


@router.get(
    "/calls/{call_id}/transcript",
    response_model=Transcript,
    summary="The call's transcript: messages with roles, times, tool calls and interruptions",
)
def get_transcript(caller: Caller, call_id: str) -> Transcript:
    return calls.get_transcript(caller.account_id, call_id)


@router.get(
    "/calls/{call_id}/recording",
    response_model=RecordingLink,
    summary="A short-lived URL of the call's stereo recording (caller left, assistant right)",
)
def get_recording(caller: Caller, call_id: str) -> RecordingLink:
    return calls.recording_link(caller.account_id, call_id)


# --------------------------------------------------------------------------- analysis


@router.get(
    "/calls/{call_id}/analysis",
    response_model=CallAnalysis,
    summary="The call's latest analysis: summary, success, structured data, extracted fields "
    "with the caller's words, and what was written into the CRM",
)
def get_analysis(caller: Caller, call_id: str) -> CallAnalysis:
    return analyses.latest(caller.account_id, call_id)


@router.get(
    "/calls/{call_id}/analyses",
    response_model=Page[CallAnalysis],
    summary="Every version of the call's analysis, newest first",
)
def list_analyses(caller: Caller, call_id: str, paging: Paging) -> Page[CallAnalysis]:
    return analyses.versions(
        caller.account_id, call_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(
    "/calls/{call_id}/analyses/{version}",
    response_model=CallAnalysis,
    summary="One version of the call's analysis",
)
def get_analysis_version(
    caller: Caller, call_id: str, version: Annotated[int, Path(ge=1, le=99_999)]
) -> CallAnalysis:
    return analyses.version(caller.account_id, call_id, version)


@router.post(
    "/calls/{call_id}/analyze",
    responses=errors_at(409),
    response_model=Call,
    status_code=202,
    summary="Analyse the call again with the assistant's current analysis settings (the new "
    "version's differences from the last are on it when done)",
)
def analyze_call(caller: Caller, call_id: str) -> Call:
    return analyses.reanalyze(caller.account_id, call_id).public()
