"""Call analyses (one item per version) and background re-runs with their progress.

Items (see docs/data-model.md, "Call analyses"):
- Analysis  PK=A#<acct> SK=ANALYSIS#<call id>#<version, 5 digits>: the CallAnalysis document.
  A version is written once (attribute_not_exists), so a job delivered twice never makes two
  of the same version; the call's versions are one range, the latest read last-first.
- Run       PK=A#<acct> SK=ANALYSISRUN#<run id>: the AnalysisRun document, plus counters
  `found`, `analyzed`, `failed` that the listing and each call's job add to atomically.
- Run call  PK=A#<acct>#ANALYSISRUN#<run id> SK=<call id>: a call the run has counted, written
  once: a call's job delivered twice counts once.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from talkturo.domain.call_analysis import AnalysisRun, CallAnalysis
from talkturo.errors import NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection

PREFIX = "ANALYSIS#"
RUN_PREFIX = "ANALYSISRUN#"


class AnalysisItem(Document):
    """PK=A#<acct> SK=ANALYSIS#<call id>#<version>."""


class RunItem(Item):
    """PK=A#<acct> SK=ANALYSISRUN#<run id>. Not versioned: the document and the counters are
    each changed by update expressions that do not touch the other."""

    doc = UnicodeAttribute()
    found = NumberAttribute(default=0)
    analyzed = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)


class RunCallItem(Item):
    """PK=A#<acct>#ANALYSISRUN#<run id> SK=<call id>."""


def _sk(call_id: str, version: int) -> str:
    return f"{PREFIX}{call_id}#{version:05d}"


def _conditional_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


# --------------------------------------------------------------------------- analyses


def create(account_id: str, analysis: CallAnalysis) -> bool:
    """Write a new version; False when that version exists already (nothing written)."""
    connection()
    item = AnalysisItem(
        keys.account(account_id),
        _sk(analysis.call_id, analysis.version),
        doc=analysis.model_dump_json(),
    )
    try:
        item.save(condition=AnalysisItem.pk.does_not_exist())
    except PutError as error:
        if _conditional_failed(error):
            return False
        raise
    return True


def replace(account_id: str, analysis: CallAnalysis) -> None:
    """Rewrite a version (its CRM changes, once written)."""
    connection()
    item = AnalysisItem.get(
        keys.account(account_id), _sk(analysis.call_id, analysis.version), consistent_read=True
    )
    item.doc = analysis.model_dump_json()
    item.save()


def get(account_id: str, call_id: str, version: int) -> CallAnalysis:
    connection()
    try:
        item = AnalysisItem.get(
            keys.account(account_id), _sk(call_id, version), consistent_read=True
        )
    except DoesNotExist:
        raise NotFound("no such analysis version", param="version") from None
    return CallAnalysis.model_validate_json(item.doc)


def get_or_none(account_id: str, call_id: str, version: int) -> CallAnalysis | None:
    try:
        return get(account_id, call_id, version)
    except NotFound:
        return None


def latest(account_id: str, call_id: str) -> CallAnalysis | None:
    connection()
    for item in AnalysisItem.query(
        keys.account(account_id),
        AnalysisItem.sk.startswith(f"{PREFIX}{call_id}#"),
        scan_index_forward=False,
        limit=1,
        consistent_read=True,
    ):
        return CallAnalysis.model_validate_json(item.doc)
    return None


def list_versions(
    account_id: str, call_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[CallAnalysis], str | None]:
    """Newest version first."""
    return query_page(
        AnalysisItem,
        keys.account(account_id),
        convert=lambda item: CallAnalysis.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=AnalysisItem.sk.startswith(f"{PREFIX}{call_id}#"),
    )


# --------------------------------------------------------------------------- runs


def _run_of(item: RunItem) -> AnalysisRun:
    run = AnalysisRun.model_validate_json(item.doc)
    run.calls_found, run.calls_analyzed, run.calls_failed = (
        int(item.found),
        int(item.analyzed),
        int(item.failed),
    )
    return run


def create_run(account_id: str, run: AnalysisRun) -> None:
    connection()
    RunItem(keys.account(account_id), RUN_PREFIX + run.id, doc=run.model_dump_json()).save(
        condition=RunItem.pk.does_not_exist()
    )


def _run_item(account_id: str, run_id: str) -> RunItem:
    connection()
    try:
        return RunItem.get(keys.account(account_id), RUN_PREFIX + run_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such analysis run", param="id") from None


def get_run(account_id: str, run_id: str) -> AnalysisRun:
    return _run_of(_run_item(account_id, run_id))


def save_run(account_id: str, run: AnalysisRun) -> AnalysisRun:
    """Rewrite the run's document (status, listing), its counters untouched."""
    connection()
    item = RunItem(keys.account(account_id), RUN_PREFIX + run.id)
    item.update(actions=[RunItem.doc.set(run.model_dump_json())], condition=RunItem.pk.exists())
    return get_run(account_id, run.id)


def list_runs(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[AnalysisRun], str | None]:
    return query_page(
        RunItem,
        keys.account(account_id),
        convert=_run_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=RunItem.sk.startswith(RUN_PREFIX),
    )


def add_found(account_id: str, run_id: str, count: int) -> None:
    connection()
    RunItem(keys.account(account_id), RUN_PREFIX + run_id).update(
        actions=[RunItem.found.add(count)]
    )


def count_call(account_id: str, run_id: str, call_id: str, *, failed: bool) -> AnalysisRun:
    """Count a call's outcome in its run, once per call; the run after it."""
    connection()
    marker = RunCallItem(f"{keys.account(account_id)}#{RUN_PREFIX}{run_id}", call_id)
    try:
        marker.save(condition=RunCallItem.pk.does_not_exist())
    except PutError as error:
        if not _conditional_failed(error):
            raise
        return get_run(account_id, run_id)
    counter = RunItem.failed if failed else RunItem.analyzed
    try:
        RunItem(keys.account(account_id), RUN_PREFIX + run_id).update(
            actions=[counter.add(1)], condition=RunItem.pk.exists()
        )
    except UpdateError as error:
        if not _conditional_failed(error):
            raise
    return get_run(account_id, run_id)
