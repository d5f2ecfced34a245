"""`Idempotency-Key` on creating POSTs, through powertools' idempotency utility.

Records live in the main table under the caller's account (`A#<acct>#IDEMPOTENCY`) and expire
after a day. The same key with a different request is refused; a key whose first request is
still running is a 409; a request that failed is not remembered, so it can be retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from talkturo import aws
from talkturo.config import get_settings
from talkturo.errors import Conflict, InvalidRequest
from talkturo.store import keys

JsonObject = dict[str, Any]

# The Lambda context of the request being served (set by the Lambda entry); powertools reads its
# remaining time so that a request which crashed does not hold its key for a whole day.
lambda_context: ContextVar[Any] = ContextVar("lambda_context", default=None)

# Outside Lambda (the local platform, tests) requests get the API's own timeout.
_REQUEST_TIMEOUT_MS = 29_000


class _LocalContext:
    function_name = "talkturo-api"
    memory_limit_in_mb = 1024
    aws_request_id = "local"
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:talkturo-api"

    def __init__(self) -> None:
        self._deadline = time.monotonic() + _REQUEST_TIMEOUT_MS / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def run_once(
    *,
    account_id: str,
    key: str | None,
    request: JsonObject,
    work: Callable[[], JsonObject],
) -> JsonObject:
    """Run `work` once per (account, key); later calls with the key get the first answer."""
    if key is None:
        return work()
    if not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters", param="Idempotency-Key")
    # Imported here: only requests that carry the header pay for powertools' idempotency module.
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    settings = get_settings()
    store = DynamoDBPersistenceLayer(
        table_name=settings.table_name,
        key_attr="PK",
        sort_key_attr="SK",
        static_pk_value=keys.account_scoped(account_id, "IDEMPOTENCY"),
        expiry_attr="expires_at",
        boto3_client=aws.client("dynamodb"),
    )
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.idempotency_ttl_seconds,
    )
    context: Any = lambda_context.get() or _LocalContext()
    config.register_lambda_context(context)

    def perform(call: JsonObject) -> JsonObject:
        return work()

    once = idempotent_function(
        perform,
        data_keyword_argument="call",
        persistence_store=store,
        config=config,
        key_prefix="api",
    )
    try:
        result: JsonObject = once(call={"key": key, "request": request})
    except IdempotencyValidationError:
        raise InvalidRequest(
            "this Idempotency-Key was already used with a different request",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict(
            "a request with this Idempotency-Key is still being processed",
            param="Idempotency-Key",
            code="idempotency_request_in_progress",
        ) from None
    return result


def create_once(
    *,
    account_id: str,
    key: str | None,
    route: str,
    body: Any,
    work: Callable[[], Any],
) -> JsonObject:
    """`run_once` for a route whose work returns a pydantic model; the answer is its JSON."""
    payload = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    return run_once(
        account_id=account_id,
        key=key,
        request={"route": route, "body": payload},
        work=lambda: work().model_dump(mode="json"),
    )
