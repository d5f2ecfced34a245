"""Write what a call's analysis extracted into the contact (and company) of the call (SPEC §6).

Each extraction field of the assistant gets one `FieldChange`: written (old → new, with the
caller's words), unchanged, kept (fill_if_empty over a value), rejected or abstained (from the
analysis), field_missing, no_record. Rules:
- only accepted values reach the CRM: validated against the field's type, with a quote found
  in what the caller said (the analysis checks both);
- an empty value never overwrites; `fill_if_empty` (the default) writes only an empty field,
  decided on the record as it is read for the write (a concurrent edit is not overwritten);
- a custom field that does not exist is created only when the assistant allows it;
- the contact's writes and their activity entry (what changed, with evidence) are one
  transaction, once per call and analysis version: a job delivered again writes nothing twice.
"""

from __future__ import annotations

from typing import Any

from talkturo.domain.analysis import (
    STANDARD_FIELDS,
    AnalysisConfig,
    ExtractedValue,
    ExtractionField,
    is_empty,
)
from talkturo.domain.call_analysis import CallAnalysis, FieldChange
from talkturo.domain.calls import CallRecord
from talkturo.domain.common import utcnow
from talkturo.domain.companies import Company, CompanyUpdate
from talkturo.domain.contacts import ActivityFieldChange, Contact, ContactActivity, ContactUpdate
from talkturo.domain.custom_fields import CustomFieldCreate
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.logs import logger
from talkturo.services import contacts, custom_fields
from talkturo.store import companies as company_store
from talkturo.store import contacts as contact_store


class _NothingToWrite(Exception):
    """Every field is decided without a write (kept, unchanged, …)."""


def _current(record: Contact | Company, key: str, standard: bool) -> Any:
    if standard:
        return getattr(record, key, None)
    return record.custom.get(key)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, str) and isinstance(new, str):
        return old.strip().casefold() == new.strip().casefold()
    return bool(old == new)


def _decide(
    record: Contact | Company,
    fields: list[tuple[ExtractionField, ExtractedValue]],
) -> tuple[list[FieldChange], dict[str, Any], dict[str, Any]]:
    """Each accepted value against the record as read: (changes, standard writes, custom)."""
    changes: list[FieldChange] = []
    standard: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for field, item in fields:
        old = _current(record, field.key, field.standard)
        base = {
            "target": field.target,
            "key": field.key,
            "old": old,
            "evidence": item.evidence,
            "write_policy": field.write_policy,
        }
        if is_empty(item.value):
            changes.append(FieldChange(**base, status="abstained", reason="empty value"))
        elif _same(old, item.value):
            changes.append(FieldChange(**base, status="unchanged", new=old))
        elif field.write_policy == "fill_if_empty" and not is_empty(old):
            changes.append(
                FieldChange(**base, status="kept", reason="the field has a value (fill_if_empty)")
            )
        else:
            changes.append(FieldChange(**base, status="written", new=item.value))
            (standard if field.standard else custom)[field.key] = item.value
    return changes, standard, custom


def _ensure_custom_fields(
    account_id: str, config: AnalysisConfig, wanted: list[ExtractionField]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(existing, created) custom field (target, key) pairs among `wanted`."""
    existing = {
        (entity, d.key)
        for entity in ("contact", "company")
        for d in custom_fields.definitions(account_id, entity)
    }
    created: set[tuple[str, str]] = set()
    for field in wanted:
        pair = (field.target, field.key)
        if pair in existing or not config.create_missing_fields or field.type is None:
            continue
        try:
            custom_fields.create(
                account_id,
                CustomFieldCreate(
                    entity=field.target,
                    key=field.key,
                    label=field.key.replace("_", " ").capitalize(),
                    type=field.type,
                    options=field.options,
                ),
            )
            created.add(pair)
        except Conflict:
            pass  # created meanwhile (another call's analysis): it exists
        except InvalidRequest as error:  # e.g. the account's limit of definitions
            logger.warning("custom field not created", extra={"key": field.key, "why": str(error)})
            continue
        existing.add(pair)
    return existing, created


def apply(
    account_id: str, call: CallRecord, config: AnalysisConfig, analysis: CallAnalysis
) -> list[FieldChange]:
    """Write the analysis's accepted values; what each extraction field did."""
    extracted = {(item.target, item.key): item for item in analysis.extracted}
    outcome: list[FieldChange] = []
    accepted: dict[str, list[tuple[ExtractionField, ExtractedValue]]] = {
        "contact": [],
        "company": [],
    }
    for field in config.extraction_fields:
        item = extracted.get((field.target, field.key))
        base = {"target": field.target, "key": field.key, "write_policy": field.write_policy}
        if item is None or item.status == "abstained":
            reason = item.reason if item else "not extracted"
            outcome.append(FieldChange(**base, status="abstained", reason=reason))
        elif item.status == "rejected":
            outcome.append(
                FieldChange(**base, status="rejected", reason=item.reason, evidence=item.evidence)
            )
        else:
            accepted[field.target].append((field, item))
    custom_wanted = [f for pairs in accepted.values() for f, _ in pairs if not f.standard]
    existing, created = (
        _ensure_custom_fields(account_id, config, custom_wanted)
        if custom_wanted
        else (set(), set())
    )
    for target in ("contact", "company"):
        usable = []
        for field, item in accepted[target]:
            if not field.standard and (target, field.key) not in existing:
                outcome.append(
                    FieldChange(
                        target=field.target,
                        key=field.key,
                        status="field_missing",
                        write_policy=field.write_policy,
                        evidence=item.evidence,
                        reason=f"no {target} custom field {field.key!r} (and it may not be "
                        "created: analysis.create_missing_fields)",
                    )
                )
            else:
                usable.append((field, item))
        if not usable:
            continue
        if target == "contact":
            changes = _write_contact(account_id, call, analysis, usable)
        else:
            changes = _write_company(account_id, call, usable)
        for change in changes:
            change.field_created = (change.target, change.key) in created
        outcome.extend(changes)
    order = {(f.target, f.key): i for i, f in enumerate(config.extraction_fields)}
    return sorted(outcome, key=lambda c: order.get((c.target, c.key), len(order)))


def _no_record(
    fields: list[tuple[ExtractionField, ExtractedValue]], what: str
) -> list[FieldChange]:
    return [
        FieldChange(
            target=field.target,
            key=field.key,
            status="no_record",
            write_policy=field.write_policy,
            evidence=item.evidence,
            reason=f"the call has no {what}",
        )
        for field, item in fields
    ]


def _field_name(change: FieldChange) -> str:
    """How the contact's activity names a field: `email`, `custom.meeting_day`."""
    standard = change.key in STANDARD_FIELDS[change.target]
    return change.key if standard else f"custom.{change.key}"


def _activity_changes(changes: list[FieldChange]) -> list[ActivityFieldChange]:
    return [
        ActivityFieldChange(
            field=_field_name(change),
            old=change.old,
            new=change.new,
            quote=change.evidence.quote if change.evidence else None,
            turn=change.evidence.turn if change.evidence else None,
        )
        for change in changes
        if change.status == "written"
    ]


def _write_contact(
    account_id: str,
    call: CallRecord,
    analysis: CallAnalysis,
    fields: list[tuple[ExtractionField, ExtractedValue]],
) -> list[FieldChange]:
    if not call.contact_id:
        return _no_record(fields, "contact")
    decided: list[FieldChange] = []
    lookups = contacts.Lookups(account_id)
    activity = ContactActivity(
        contact_id=call.contact_id,
        type="fields_updated",
        at=utcnow(),
        call_id=call.id,
        analysis_version=analysis.version,
    )
    receipt = contact_store.activity_receipt(account_id, activity)

    def change(current: Contact) -> Contact:
        nonlocal decided
        decided, standard, custom = _decide(current, fields)
        if not standard and not custom:
            raise _NothingToWrite
        update = ContactUpdate(**standard, **({"custom": custom} if custom else {}))
        written = _activity_changes(decided)
        # The receipt is the activity entry: it says what this very write changed.
        receipt.doc = activity.model_copy(
            update={
                "changes": written,
                "detail": f"analysis v{analysis.version}: " + ", ".join(c.field for c in written),
            }
        ).model_dump_json()
        return contacts.changer(update, lookups, may_lift_dnc=False)(current)

    try:
        contact_store.update(account_id, call.contact_id, change, receipt=receipt)
    except _NothingToWrite:
        pass
    except contact_store.ReceiptExists:
        # Written by an earlier delivery of this job: report what that write did.
        return _from_receipt(account_id, call, analysis, fields)
    except NotFound:
        return _no_record(fields, "contact (it was deleted)")
    except (InvalidRequest, ValueError) as error:
        return _refused(fields, str(error))
    return decided


def _from_receipt(
    account_id: str,
    call: CallRecord,
    analysis: CallAnalysis,
    fields: list[tuple[ExtractionField, ExtractedValue]],
) -> list[FieldChange]:
    """The changes an earlier delivery wrote (its activity entry), the rest as now decided."""
    assert call.contact_id is not None
    current = contact_store.get(account_id, call.contact_id)
    decided, _, _ = _decide(current, fields)
    page, _ = contact_store.list_activity(
        account_id, call.contact_id, limit=100, starting_after=None
    )
    entry = next(
        (
            a
            for a in page
            if a.call_id == call.id
            and a.type == "fields_updated"
            and a.analysis_version == analysis.version
        ),
        None,
    )
    written = {c.field: c for c in (entry.changes or [])} if entry else {}
    for change in decided:
        earlier = written.get(_field_name(change))
        if earlier is not None:
            change.status, change.old, change.new = "written", earlier.old, earlier.new
    return decided


def _refused(fields: list[tuple[ExtractionField, ExtractedValue]], why: str) -> list[FieldChange]:
    return [
        FieldChange(
            target=field.target,
            key=field.key,
            status="rejected",
            write_policy=field.write_policy,
            evidence=item.evidence,
            reason=f"the CRM refused the write: {why}"[:300],
        )
        for field, item in fields
    ]


def _write_company(
    account_id: str, call: CallRecord, fields: list[tuple[ExtractionField, ExtractedValue]]
) -> list[FieldChange]:
    """Company values are written without an activity entry (a company has none); writing the
    same values again changes nothing, so a repeated job is harmless."""
    if not call.company_id:
        return _no_record(fields, "company")
    decided: list[FieldChange] = []

    def change(current: Company) -> Company:
        nonlocal decided
        decided, standard, custom = _decide(current, fields)
        if not standard and not custom:
            raise _NothingToWrite
        CompanyUpdate(**standard)  # the same checks as the API's (a URL, bounds)
        merged = {**current.custom, **custom}
        return current.model_copy(update={**standard, "custom": merged, "updated_at": utcnow()})

    try:
        company_store.update(account_id, call.company_id, change)
    except _NothingToWrite:
        pass
    except NotFound:
        return _no_record(fields, "company (it was deleted)")
    except (InvalidRequest, ValueError) as error:
        return _refused(fields, str(error))
    return decided
