"""Events to the customer: `emit` (what every part of the platform calls), webhook endpoints,
delivery (the event worker and the sweeper) and the delivery log.

emit writes the event and one delivery per endpoint that wants it in one transaction, then
puts a message per delivery on the event queue. The table is the truth: a message that could
not be queued (the queue down, a crash just after the write) is found by the sweeper through
the due index within about a minute and a half, so nothing written is lost. What emit never
does is fail the work that emitted it: if the table itself cannot be written, the event is
logged as lost and the caller goes on.

Each attempt is claimed first (a conditional write on the delivery's version), so a message
delivered twice by SQS, or queued by both a retry and the sweeper, makes one attempt. Waits up
to QUEUE_DELAY_MAX_SECONDS go on the queue as a delay; longer ones wait in the table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.common import Page, utcnow
from talkturo.domain.events import (
    CLAIM_LEASE,
    DISABLE_AFTER,
    MAX_ENDPOINTS_PER_ACCOUNT,
    MAX_EVENT_BYTES,
    MAX_LOGGED_ATTEMPTS,
    QUEUE_DELAY_MAX_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    RESPONSE_EXCERPT_BYTES,
    ROTATION_OVERLAP,
    AttemptTrigger,
    DeliveryAttempt,
    DeliveryJob,
    DisabledReason,
    EndpointRecord,
    Event,
    EventType,
    SigningSecret,
    WebhookDelivery,
    WebhookDeliveryWithBody,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookSecret,
    event_id,
    excerpt,
    new_secret,
    next_delay,
    signed_headers,
)
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.store import events as store

if TYPE_CHECKING:
    from talkturo.http_guard import OutboundPolicy, Resolver

ATTEMPTS = 5
SWEEP_LIMIT = 200


# --------------------------------------------------------------------------- emit


def emit(
    account_id: str,
    event_type: EventType,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    *,
    key: str,
) -> str | None:
    """Tell the account's endpoints that wish to know; the event id, or None when no endpoint
    wants this type (one query) or the event could not be written (logged, never raised).

    `data` may be a function, called only when some endpoint wants the event (a payload that
    costs a read). `key` names the happening (`call.ended:<call id>`): emitting the same key
    again, from a retried caller, makes no second event."""
    try:
        wanting = [e for e in store.endpoints(account_id) if e.wants(event_type)]
        if not wanting:
            return None
        payload = data() if callable(data) else data
        return _emit(account_id, event_type, payload, key=key, endpoints=wanting)
    except Exception:  # noqa: BLE001 - an event never fails the work that emits it
        logger.exception("event could not be written", extra={"type": event_type, "key": key})
        return None


def _emit(
    account_id: str,
    event_type: EventType,
    data: dict[str, Any],
    *,
    key: str,
    endpoints: list[EndpointRecord],
) -> str:
    now = utcnow()
    event = Event(id=event_id(account_id, key), type=event_type, created_at=now, data=data)
    size = len(event.body().encode())
    if size > MAX_EVENT_BYTES:
        raise ValueError(f"the event's body is {size} bytes, more than {MAX_EVENT_BYTES}")
    deliveries = [
        WebhookDelivery(
            id=new_id("webhook_delivery"),
            endpoint_id=endpoint.id,
            event_id=event.id,
            event_type=event_type,
            status="pending",
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        for endpoint in endpoints
    ]
    if not store.create_event(account_id, event, deliveries, due_in=CLAIM_LEASE):
        logger.info("event emitted before", extra={"id": event.id, "type": event_type})
        return event.id
    for delivery in deliveries:
        _queue(account_id, delivery, attempt=0)
    logger.info(
        "event emitted", extra={"id": event.id, "type": event_type, "deliveries": len(deliveries)}
    )
    return event.id


def _queue(
    account_id: str,
    delivery: WebhookDelivery,
    *,
    attempt: int,
    delay_seconds: int = 0,
    trigger: AttemptTrigger = "scheduled",
) -> bool:
    """A message for the delivery's next attempt; False when it could not be queued (the
    sweeper finds the delivery due later)."""
    job = DeliveryJob(
        account_id=account_id,
        endpoint_id=delivery.endpoint_id,
        delivery_id=delivery.id,
        attempt=attempt,
        trigger=trigger,
    )
    try:
        queues.send(get_settings().event_queue_url, job.model_dump(), delay_seconds=delay_seconds)
    except (BotoCoreError, ClientError, RuntimeError):
        logger.warning("delivery could not be queued; the sweeper will", extra={"id": delivery.id})
        return False
    return True


# --------------------------------------------------------------------------- endpoints


def _check_id(endpoint_id: str) -> None:
    if not has_prefix(endpoint_id, "webhook_endpoint"):
        raise NotFound("no such webhook endpoint", param="id")


def check_url(url: str, *, policy: OutboundPolicy | None = None) -> str:
    """The URL, if events may be sent there (422 naming `url` otherwise). What needs no DNS
    lookup is checked here; every delivery checks the resolved addresses again."""
    from talkturo.http_guard import BlockedDestination, OutboundHttpError, check_static

    try:
        check_static(url, policy=policy)
    except BlockedDestination as refused:
        raise InvalidRequest(f"url: {refused.reason}", param="url") from None
    except OutboundHttpError as invalid:
        raise InvalidRequest(f"url: {invalid.reason}", param="url") from None
    return url


def create_endpoint(account_id: str, data: WebhookEndpointCreate) -> WebhookEndpointWithSecret:
    check_url(data.url)
    if len(store.endpoints(account_id)) >= MAX_ENDPOINTS_PER_ACCOUNT:
        raise Conflict(
            f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints",
            code="too_many_webhook_endpoints",
        )
    now = utcnow()
    record = EndpointRecord(
        id=new_id("webhook_endpoint"),
        url=data.url,
        description=data.description,
        event_types=data.event_types,
        enabled=data.enabled,
        disabled_reason=None if data.enabled else "paused",
        disabled_at=None if data.enabled else now,
        created_at=now,
        updated_at=now,
        secrets=[SigningSecret(secret=new_secret())],
    )
    store.create_endpoint(account_id, record)
    logger.info("webhook endpoint created", extra={"id": record.id})
    return record.with_secret()


def _record(account_id: str, endpoint_id: str) -> tuple[EndpointRecord, int]:
    _check_id(endpoint_id)
    return store.get_endpoint(account_id, endpoint_id)


def get_endpoint(account_id: str, endpoint_id: str) -> WebhookEndpoint:
    return _record(account_id, endpoint_id)[0].public()


def list_endpoints(
    account_id: str, *, limit: int, starting_after: str | None
) -> Page[WebhookEndpoint]:
    found, cursor = store.list_endpoints(account_id, limit=limit, starting_after=starting_after)
    return Page[WebhookEndpoint](
        data=[r.public() for r in found], has_more=cursor is not None, next_cursor=cursor
    )


def _change(
    account_id: str, endpoint_id: str, change: Any, *, check: bool = True
) -> EndpointRecord:
    """Read, change (record → record), write under the version; again on a race."""
    if check:
        _check_id(endpoint_id)
    for _ in range(ATTEMPTS):
        before, version = store.get_endpoint(account_id, endpoint_id)
        after = change(before)
        if after is None or after == before:
            return before
        try:
            store.save_endpoint(account_id, after, version)
        except store.Stale:
            continue
        return after
    raise store.endpoint_conflict()


def _enabled(record: EndpointRecord, now: datetime) -> dict[str, Any]:
    return {
        "enabled": True,
        "disabled_reason": None,
        "disabled_message": None,
        "disabled_at": None,
        "failing_since": None,
        "updated_at": now,
    }


def _disabled(reason: DisabledReason, message: str, now: datetime) -> dict[str, Any]:
    return {
        "enabled": False,
        "disabled_reason": reason,
        "disabled_message": message,
        "disabled_at": now,
        "updated_at": now,
    }


def update_endpoint(
    account_id: str, endpoint_id: str, changes: WebhookEndpointUpdate
) -> WebhookEndpoint:
    given = changes.model_dump(exclude_unset=True)
    if "url" in given:
        check_url(given["url"])

    def change(record: EndpointRecord) -> EndpointRecord:
        now = utcnow()
        updates = {k: v for k, v in given.items() if k in ("url", "description", "event_types")}
        updates["updated_at"] = now
        if given.get("enabled") is True and not record.enabled:
            updates.update(_enabled(record, now))
        elif given.get("enabled") is False and record.enabled:
            updates.update(_disabled("paused", "paused through the API", now))
        return record.model_copy(update=updates)

    return _change(account_id, endpoint_id, change).public()


def delete_endpoint(account_id: str, endpoint_id: str) -> WebhookEndpoint:
    """Remove the endpoint; its pending deliveries end failed when their turn comes."""
    record, _ = _record(account_id, endpoint_id)
    store.delete_endpoint(account_id, endpoint_id)
    logger.info("webhook endpoint deleted", extra={"id": endpoint_id})
    return record.public()


def _secret_of(record: EndpointRecord, now: datetime) -> WebhookSecret:
    previous = [s.expires_at for s in record.secrets[1:] if s.expires_at and s.expires_at > now]
    return WebhookSecret(
        endpoint_id=record.id,
        secret=record.secrets[0].secret,
        previous_secret_expires_at=max(previous) if previous else None,
    )


def reveal_secret(account_id: str, endpoint_id: str) -> WebhookSecret:
    return _secret_of(_record(account_id, endpoint_id)[0], utcnow())


def rotate_secret(account_id: str, endpoint_id: str) -> WebhookSecret:
    """A new secret signs from now on; the one it replaces signs too for 24 hours (two
    signatures), so receivers can switch without losing an event. Secrets already ending
    are dropped."""
    now = utcnow()

    def change(record: EndpointRecord) -> EndpointRecord:
        current = record.secrets[0].model_copy(update={"expires_at": now + ROTATION_OVERLAP})
        return record.model_copy(
            update={
                "secrets": [SigningSecret(secret=new_secret()), current],
                "secret_rotated_at": now,
                "updated_at": now,
            }
        )

    rotated = _change(account_id, endpoint_id, change)
    logger.info("webhook secret rotated", extra={"id": endpoint_id})
    return _secret_of(rotated, now)


# --------------------------------------------------------------------------- test, replay, log


def _refuse_disabled(record: EndpointRecord, action: str) -> None:
    if not record.enabled:
        raise Conflict(
            f"the endpoint is disabled ({record.disabled_reason}); enable it before {action}",
            param="enabled",
            code="webhook_endpoint_disabled",
        )


def send_test(
    account_id: str,
    endpoint_id: str,
    *,
    policy: OutboundPolicy | None = None,
    resolver: Resolver | None = None,
) -> WebhookDeliveryWithBody:
    """A `webhook.test` event to this endpoint, its first attempt made now (within the
    request); a failed one is retried like any other delivery."""
    record, _ = _record(account_id, endpoint_id)
    _refuse_disabled(record, "testing it")
    now = utcnow()
    event = Event(
        id=event_id(account_id, f"webhook.test:{new_id('webhook_delivery')}"),
        type="webhook.test",
        created_at=now,
        data={"endpoint_id": endpoint_id, "message": "a test event from Talkturo"},
    )
    delivery = WebhookDelivery(
        id=new_id("webhook_delivery"),
        endpoint_id=endpoint_id,
        event_id=event.id,
        event_type="webhook.test",
        status="pending",
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    store.create_event(account_id, event, [delivery], due_in=CLAIM_LEASE)
    deliver(
        DeliveryJob(
            account_id=account_id, endpoint_id=endpoint_id, delivery_id=delivery.id, attempt=0
        ),
        policy=policy,
        resolver=resolver,
    )
    return get_delivery(account_id, endpoint_id, delivery.id)


def _with_bodies(
    account_id: str, deliveries: list[WebhookDelivery]
) -> list[WebhookDeliveryWithBody]:
    bodies = store.event_bodies(account_id, {d.event_id for d in deliveries}) if deliveries else {}
    return [
        WebhookDeliveryWithBody(**d.model_dump(), request_body=bodies.get(d.event_id, ""))
        for d in deliveries
    ]


def list_deliveries(
    account_id: str,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> Page[WebhookDeliveryWithBody]:
    _record(account_id, endpoint_id)
    found, cursor = store.list_deliveries(
        account_id, endpoint_id, status=status, limit=limit, starting_after=starting_after
    )
    return Page[WebhookDeliveryWithBody](
        data=_with_bodies(account_id, found), has_more=cursor is not None, next_cursor=cursor
    )


def _check_delivery_id(delivery_id: str) -> None:
    if not has_prefix(delivery_id, "webhook_delivery"):
        raise NotFound("no such delivery", param="delivery_id")


def get_delivery(account_id: str, endpoint_id: str, delivery_id: str) -> WebhookDeliveryWithBody:
    _check_id(endpoint_id)
    _check_delivery_id(delivery_id)
    delivery, _ = store.get_delivery(account_id, endpoint_id, delivery_id)
    return _with_bodies(account_id, [delivery])[0]


def replay(account_id: str, endpoint_id: str, delivery_id: str) -> WebhookDeliveryWithBody:
    """Send the delivery's event again now (same `webhook-id`), whatever became of it."""
    record, _ = _record(account_id, endpoint_id)
    _refuse_disabled(record, "replaying to it")
    _check_delivery_id(delivery_id)
    for _ in range(ATTEMPTS):
        delivery, version = store.get_delivery(account_id, endpoint_id, delivery_id)
        now = utcnow()
        again = delivery.model_copy(
            update={"status": "pending", "next_attempt_at": now, "updated_at": now}
        )
        try:
            store.save_delivery(account_id, again, version, due_in=CLAIM_LEASE)
        except store.Stale:
            continue
        _queue(account_id, again, attempt=again.attempt_count, trigger="replay")
        logger.info("delivery replayed", extra={"id": delivery_id})
        return _with_bodies(account_id, [again])[0]
    raise Conflict("the delivery changed at the same time; try again")


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: bytes
    truncated: bool
    latency_ms: int
    error: str | None


def _post(
    url: str,
    headers: dict[str, str],
    body: str,
    *,
    policy: OutboundPolicy | None,
    resolver: Resolver | None,
) -> Answer:
    """One POST through the SSRF guard: redirects are not followed (a 3xx is the answer)."""
    from talkturo.http_guard import (
        BlockedDestination,
        OutboundHttpError,
        OutboundTimeout,
        guarded_request,
    )

    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        response = asyncio.run(
            guarded_request(
                "POST",
                url,
                headers=headers,
                content=body.encode(),
                timeout=REQUEST_TIMEOUT_SECONDS,
                max_bytes=RESPONSE_EXCERPT_BYTES,
                follow_redirects=False,
                policy=policy,
                resolver=resolver,
            )
        )
    except BlockedDestination as refused:
        return Answer(None, b"", False, elapsed(), f"refused: {refused.reason}")
    except OutboundTimeout as late:
        return Answer(None, b"", False, elapsed(), f"timeout: {late.reason}")
    except OutboundHttpError as failed:
        return Answer(None, b"", False, elapsed(), failed.reason)
    return Answer(response.status, response.body, response.truncated, elapsed(), None)


def deliver(
    job: DeliveryJob,
    *,
    policy: OutboundPolicy | None = None,
    resolver: Resolver | None = None,
) -> str:
    """Make the delivery's next attempt if it is still the one the job names; what became of
    it (`delivered`, `retrying`, `failed`, `stale` for a job that is not current any more)."""
    try:
        delivery, version = store.get_delivery(job.account_id, job.endpoint_id, job.delivery_id)
    except NotFound:
        return "stale"
    if delivery.status != "pending" or delivery.attempt_count != job.attempt:
        return "stale"
    now = utcnow()
    try:
        endpoint, _ = store.get_endpoint(job.account_id, job.endpoint_id)
    except NotFound:
        return _give_up(job.account_id, delivery, version, "the endpoint was deleted")
    if not endpoint.enabled:
        return _give_up(
            job.account_id,
            delivery,
            version,
            f"the endpoint is disabled ({endpoint.disabled_reason})",
        )
    body = store.event_body(job.account_id, delivery.event_id)
    if body is None:
        return _give_up(job.account_id, delivery, version, "the event is no longer kept")
    number = delivery.attempt_count + 1
    claimed = delivery.model_copy(
        update={"attempt_count": number, "next_attempt_at": now, "updated_at": now}
    )
    try:
        store.save_delivery(job.account_id, claimed, version, due_in=CLAIM_LEASE)
    except store.Stale:
        return "stale"
    headers = signed_headers(
        endpoint.secrets_at(now), delivery.event_id, int(now.timestamp()), body
    )
    answer = _post(endpoint.url, headers, body, policy=policy, resolver=resolver)
    attempt = DeliveryAttempt(
        attempt=number,
        trigger=job.trigger,
        at=now,
        url=endpoint.url,
        request_headers=headers,
        response_status=answer.status,
        response_body_excerpt=excerpt(answer.body),
        response_truncated=answer.truncated,
        latency_ms=answer.latency_ms,
        error=answer.error,
    )
    outcome, delay = _after(attempt)
    _log_attempt(job.account_id, claimed, attempt, outcome, delay)
    _endpoint_health(job.account_id, endpoint.id, attempt, outcome)
    if outcome == "retrying" and delay is not None and delay <= QUEUE_DELAY_MAX_SECONDS:
        _queue(job.account_id, claimed, attempt=number, delay_seconds=delay)
    logger.info(
        "delivery attempt",
        extra={
            "id": delivery.id,
            "event": delivery.event_id,
            "attempt": number,
            "status": answer.status,
            "error": answer.error,
            "outcome": outcome,
        },
    )
    return outcome


def _after(attempt: DeliveryAttempt) -> tuple[str, int | None]:
    status = attempt.response_status
    if status is not None and 200 <= status < 300:
        return "delivered", None
    if status == 410:
        return "failed", None
    delay = next_delay(attempt.attempt)
    return ("failed", None) if delay is None else ("retrying", delay)


def _attempt_error(attempt: DeliveryAttempt) -> str:
    if attempt.error:
        return attempt.error
    return f"the endpoint answered {attempt.response_status}"


def _log_attempt(
    account_id: str,
    claimed: WebhookDelivery,
    attempt: DeliveryAttempt,
    outcome: str,
    delay: int | None,
) -> None:
    """Write the attempt into the delivery's log with what follows from it."""
    for _ in range(ATTEMPTS):
        current, version = store.get_delivery(account_id, claimed.endpoint_id, claimed.id)
        now = utcnow()
        updates: dict[str, Any] = {
            "attempts": [*current.attempts, attempt][-MAX_LOGGED_ATTEMPTS:],
            "updated_at": now,
            "last_error": None if outcome == "delivered" else _attempt_error(attempt),
        }
        due_in = None
        if current.attempt_count != attempt.attempt or current.status != "pending":
            pass  # replayed meanwhile: its own attempt decides what follows
        elif outcome == "retrying" and delay is not None:
            updates.update(status="pending", next_attempt_at=attempt.at + _seconds(delay))
            # A short wait is on the queue; the due index is then only the backstop.
            due_in = CLAIM_LEASE if delay <= QUEUE_DELAY_MAX_SECONDS else None
        else:
            updates.update(status=outcome, next_attempt_at=None)
        try:
            store.save_delivery(
                account_id, current.model_copy(update=updates), version, due_in=due_in
            )
        except store.Stale:
            continue
        return
    logger.warning("delivery attempt could not be logged", extra={"id": claimed.id})


def _seconds(seconds: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


def _give_up(account_id: str, delivery: WebhookDelivery, version: int, reason: str) -> str:
    now = utcnow()
    ended = delivery.model_copy(
        update={
            "status": "failed",
            "next_attempt_at": None,
            "last_error": reason,
            "updated_at": now,
        }
    )
    try:
        store.save_delivery(account_id, ended, version)
    except store.Stale:
        return "stale"
    return "failed"


def _endpoint_health(
    account_id: str, endpoint_id: str, attempt: DeliveryAttempt, outcome: str
) -> None:
    """A success clears `failing_since`; a 410 disables the endpoint at once; failing for
    DISABLE_AFTER since the first failure after the last success disables it too."""

    def change(record: EndpointRecord) -> EndpointRecord | None:
        now = utcnow()
        if outcome == "delivered":
            if record.failing_since is None:
                return None
            return record.model_copy(update={"failing_since": None, "updated_at": now})
        if not record.enabled:
            return None
        if attempt.response_status == 410:
            return record.model_copy(
                update=_disabled("gone", "the endpoint answered 410 Gone", now)
            )
        since = record.failing_since or attempt.at
        if attempt.at - since >= DISABLE_AFTER:
            return record.model_copy(
                update={
                    **_disabled(
                        "failing",
                        f"every attempt failed since {since.isoformat()} "
                        f"(last: {_attempt_error(attempt)})",
                        now,
                    ),
                    "failing_since": since,
                }
            )
        if record.failing_since is None:
            return record.model_copy(update={"failing_since": since, "updated_at": now})
        return None

    try:
        after = _change(account_id, endpoint_id, change, check=False)
    except NotFound:
        return
    if not after.enabled and after.disabled_reason in ("gone", "failing"):
        logger.warning(
            "webhook endpoint disabled",
            extra={"id": endpoint_id, "reason": after.disabled_reason},
        )


# --------------------------------------------------------------------------- sweeper


def sweep(now: datetime | None = None, *, limit: int = SWEEP_LIMIT) -> int:
    """Queue every pending delivery whose time has come (long retry waits, and messages that
    were lost); how many were queued. Each is pushed CLAIM_LEASE later first, so the next run
    does not queue it again while its message waits."""
    now = now or utcnow()
    queued = 0
    for account_id, endpoint_id, delivery_id in list(store.due(now, limit=limit)):
        try:
            delivery, version = store.get_delivery(account_id, endpoint_id, delivery_id)
        except NotFound:
            continue
        if delivery.status != "pending":
            continue
        try:
            store.save_delivery(
                account_id,
                delivery.model_copy(update={"updated_at": now}),
                version,
                due_in=CLAIM_LEASE,
                due_from=now,
            )
        except store.Stale:
            continue
        if _queue(account_id, delivery, attempt=delivery.attempt_count):
            queued += 1
    return queued
