"""Assistants: create from a template, change, clone, delete, price; the catalog and templates."""

from __future__ import annotations

from typing import Any

from talkturo.domain.assistant_templates import get_templates
from talkturo.domain.assistants import (
    Assistant,
    AssistantConfig,
    AssistantDeleted,
    AssistantEstimate,
    AssistantRecord,
    AssistantSettings,
    AssistantTemplate,
    config_for_create,
    config_for_update,
    estimate_of,
    present,
    settings_of,
)
from talkturo.domain.catalog import Catalog, get_catalog
from talkturo.domain.common import Page, utcnow
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.store import assistants as store

# A PATCH re-reads and re-applies its changes when another write lands in between.
SAVE_ATTEMPTS = 3


def _templates() -> dict[str, dict[str, Any]]:
    return {template_id: t.assistant for template_id, t in get_templates().items()}


def _check_id(assistant_id: str) -> None:
    if not has_prefix(assistant_id, "assistant"):
        raise NotFound("no such assistant", param="id")


def _check_destinations(account_id: str, config: AssistantConfig) -> None:
    """Transfer destinations pass the dialing rules (422 naming the destination's number)."""
    if any(tool.type == "transfer_call" for tool in config.tools):
        # Imported here: the rules and the account's numbers only matter with a transfer tool.
        from talkturo.services import dialing

        dialing.check_transfer_tools(account_id, config.tools)


def _check_analysis(account_id: str, config: AssistantConfig) -> None:
    """The fields the analysis fills exist (or may be created, with a type): 422 naming the
    field otherwise (`analysis.extraction_fields[2].key`)."""
    custom = [f for f in config.analysis.extraction_fields if not f.standard]
    if not custom:
        return
    from talkturo.domain.analysis import KnownField, analysis_issues
    from talkturo.services import custom_fields

    known = [
        KnownField(target=entity, key=d.key, type=d.type, options=d.options)
        for entity in ("contact", "company")
        for d in custom_fields.definitions(account_id, entity)
    ]
    for param, message in analysis_issues(config.analysis, known):
        raise InvalidRequest(message, param=param)


def _new_record(config: AssistantConfig) -> AssistantRecord:
    now = utcnow()
    fields = {name: getattr(config, name) for name in AssistantConfig.model_fields}
    return AssistantRecord(**fields, id=new_id("assistant"), created_at=now, updated_at=now)


def get_record(account_id: str, assistant_id: str) -> AssistantRecord:
    """The stored assistant, secrets in clear: for the parts that run calls, never for answers."""
    _check_id(assistant_id)
    record, _ = store.get(account_id, assistant_id)
    return record


def outbound_record(account_id: str, assistant_id: str) -> AssistantRecord:
    """The assistant that is to place calls: 404 naming `assistant_id` when it does not
    exist, 422 `outbound_disabled` when its outbound calls are off."""
    try:
        assistant = get_record(account_id, assistant_id)
    except NotFound:
        raise NotFound("no such assistant", param="assistant_id") from None
    if not assistant.telephony.outbound_enabled:
        raise InvalidRequest(
            "outbound calls are disabled for this assistant (telephony.outbound_enabled)",
            param="assistant_id",
            code="outbound_disabled",
        )
    return assistant


def create_assistant(account_id: str, changes: dict[str, Any]) -> Assistant:
    catalog = get_catalog()
    config = config_for_create(changes, catalog=catalog, templates=_templates())
    _check_destinations(account_id, config)
    _check_analysis(account_id, config)
    record = _new_record(config)
    store.create(account_id, record)
    return present(record, catalog)


def estimate(changes: dict[str, Any]) -> AssistantEstimate:
    """What an assistant built from these fields would cost per minute; nothing is saved."""
    catalog = get_catalog()
    breakdown = estimate_of(
        config_for_create(changes, catalog=catalog, templates=_templates()), catalog
    )
    return AssistantEstimate(
        estimated_credits_per_minute=breakdown.total, estimate_breakdown=breakdown
    )


def get_assistant(account_id: str, assistant_id: str) -> Assistant:
    return present(get_record(account_id, assistant_id), get_catalog())


def list_assistants(account_id: str, *, limit: int, starting_after: str | None) -> Page[Assistant]:
    catalog = get_catalog()
    records, cursor = store.list_page(account_id, limit=limit, starting_after=starting_after)
    return Page[Assistant](
        data=[present(r, catalog) for r in records],
        has_more=cursor is not None,
        next_cursor=cursor,
    )


def update_assistant(account_id: str, assistant_id: str, changes: dict[str, Any]) -> Assistant:
    _check_id(assistant_id)
    catalog = get_catalog()
    attempts = 0
    while True:
        current, version = store.get(account_id, assistant_id)
        config = config_for_update(current, changes, catalog=catalog)
        if "tools" in changes:
            # Only tools being saved: a stored destination the rules now refuse does not block
            # other changes (it is refused when the transfer happens).
            _check_destinations(account_id, config)
        if "analysis" in changes:
            _check_analysis(account_id, config)
        fields = {name: getattr(config, name) for name in AssistantConfig.model_fields}
        updated = current.model_copy(update={**fields, "updated_at": utcnow()})
        try:
            store.save(account_id, updated, version)
        except Conflict:
            attempts += 1
            if attempts >= SAVE_ATTEMPTS:
                raise
            continue
        return present(updated, catalog)


def clone_assistant(account_id: str, assistant_id: str, name: str | None) -> Assistant:
    """A copy of the configuration (secrets included); no numbers, no campaigns."""
    source = get_record(account_id, assistant_id)
    fields = {field: getattr(source, field) for field in AssistantConfig.model_fields}
    fields["name"] = name or _copy_name(source.name)
    record = _new_record(AssistantConfig(**fields))
    store.create(account_id, record)
    return present(record, get_catalog())


def _copy_name(name: str) -> str:
    suffix = " (copy)"
    return name[: 200 - len(suffix)] + suffix


def delete_assistant(account_id: str, assistant_id: str) -> AssistantDeleted:
    _check_id(assistant_id)
    store.delete(account_id, assistant_id)
    return AssistantDeleted(id=assistant_id)


def get_catalog_view() -> Catalog:
    return get_catalog()


def list_templates() -> Page[AssistantTemplate]:
    catalog = get_catalog()
    templates = _templates()
    data = []
    for template_id, source in get_templates().items():
        config = config_for_create({"template": template_id}, catalog=catalog, templates=templates)
        breakdown = estimate_of(config, catalog)
        data.append(
            AssistantTemplate(
                id=template_id,
                name=source.name,
                description=source.description,
                assistant=AssistantSettings(**settings_of(config)),
                estimated_credits_per_minute=breakdown.total,
                estimate_breakdown=breakdown,
            )
        )
    return Page[AssistantTemplate](data=data, has_more=False)
