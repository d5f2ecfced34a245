"""Request-scoped dependencies: who is calling, and the admin gate."""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Header, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from talkturo.config import get_settings
from talkturo.domain.accounts import Principal
from talkturo.domain.common import ListParams
from talkturo.errors import AuthenticationFailed, NotFound
from talkturo.services import accounts

_bearer = HTTPBearer(auto_error=False, description="An API key of your account: `Bearer tk_…`")


def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    return accounts.authenticate(header)


Caller = Annotated[Principal, Depends(current_principal)]


def list_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page.")] = 20,
    starting_after: Annotated[
        str | None, Query(description="The `next_cursor` of the previous page.")
    ] = None,
) -> ListParams:
    return ListParams(limit=limit, starting_after=starting_after)


Paging = Annotated[ListParams, Depends(list_params)]


@lru_cache(maxsize=1)
def _admin_secret() -> str:
    settings = get_settings()
    if settings.admin_secret:
        return settings.admin_secret
    if settings.admin_secret_arn:
        # Powertools caches the value, so Secrets Manager is asked once per container.
        from aws_lambda_powertools.utilities.parameters import get_secret

        return str(get_secret(settings.admin_secret_arn, max_age=300))
    return ""


def require_admin(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    secret = _admin_secret()
    if not secret:
        # No admin secret configured: the admin API does not exist on this deployment.
        raise NotFound("the admin API is not enabled on this deployment")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise AuthenticationFailed(
            "the admin API needs 'Bearer <admin secret>'", code="invalid_admin_secret"
        )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes this creating request safe to retry: the same key gives the same "
        "answer for 24 hours.",
    ),
]
