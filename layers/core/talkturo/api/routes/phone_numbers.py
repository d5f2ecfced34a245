"""Phone numbers: search the carrier's offer, buy, name, assign to an assistant, release."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.numbers import (
    AvailableList,
    NumberStatus,
    PhoneNumber,
    PhoneNumberAssign,
    PhoneNumberBuy,
    PhoneNumberUpdate,
)
from talkturo.domain.telephony import Country, NumberSearch, NumberType
from talkturo.services import numbers

router = APIRouter(tags=["Phone numbers"])


def owned_number(caller: Caller, phone_number_id: str) -> PhoneNumber:
    """The caller's number (404 otherwise), checked before any body is read."""
    return numbers.get(caller.account_id, phone_number_id)


Owned = Annotated[PhoneNumber, Depends(owned_number)]


class AssignBody(PhoneNumberAssign):
    reassign: bool = Field(
        default=False,
        description="Move the number from the assistant holding it (otherwise that is a 409).",
    )


@router.get(
    "/phone-numbers/available",
    responses=errors_at(502, 503),
    response_model=AvailableList,
    summary="Search numbers to buy, with their monthly and setup price",
)
def search_available(
    caller: Caller,
    country: Annotated[Country, Query(description="AE, US, CA, DE, AT or CH.")] = "US",
    type: Annotated[NumberType, Query(description="local or toll_free.")] = "local",
    area_code: Annotated[str | None, Query(pattern=r"^\d{2,5}$")] = None,
    contains: Annotated[
        str | None,
        Query(pattern=r"^[0-9A-Za-z*]{1,16}$", description="Digits or letters; * is any digit."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> AvailableList:
    query = NumberSearch(
        country=country, type=type, area_code=area_code, contains=contains, limit=limit
    )
    return numbers.search(query)


@router.post(
    "/phone-numbers",
    responses=errors_at(402),
    response_model=PhoneNumber,
    status_code=202,
    summary="Buy a number (answers at once with status purchasing)",
)
def buy_number(caller: Caller, body: PhoneNumberBuy, idempotency_key: IdempotencyKey = None) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/phone-numbers",
        body=body,
        work=lambda: numbers.buy(caller.account_id, body),
    )


@router.get(
    "/phone-numbers", response_model=Page[PhoneNumber], summary="List phone numbers, newest first"
)
def list_numbers(
    caller: Caller,
    paging: Paging,
    status: NumberStatus | None = None,
    assistant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[PhoneNumber]:
    return numbers.list_numbers(
        caller.account_id,
        limit=paging.limit,
        starting_after=paging.starting_after,
        status=status,
        assistant_id=assistant_id,
    )


@router.get("/phone-numbers/{phone_number_id}", response_model=PhoneNumber, summary="A number")
def get_number(number: Owned) -> PhoneNumber:
    return number


@router.patch(
    "/phone-numbers/{phone_number_id}",
    responses=errors_at(409),
    response_model=PhoneNumber,
    summary="Rename a number",
)
def update_number(caller: Caller, number: Owned, body: PhoneNumberUpdate) -> PhoneNumber:
    return numbers.rename(caller.account_id, number.id, body.friendly_name)


@router.post(
    "/phone-numbers/{phone_number_id}/assign",
    responses=errors_at(409),
    response_model=PhoneNumber,
    summary="Assign the number to an assistant (one assistant per number)",
)
def assign_number(caller: Caller, number: Owned, body: AssignBody) -> PhoneNumber:
    return numbers.assign(caller.account_id, number.id, body.assistant_id, reassign=body.reassign)


@router.post(
    "/phone-numbers/{phone_number_id}/unassign",
    responses=errors_at(409),
    response_model=PhoneNumber,
    summary="Take the number from its assistant",
)
def unassign_number(caller: Caller, number: Owned) -> PhoneNumber:
    return numbers.unassign(caller.account_id, number.id)


@router.delete(
    "/phone-numbers/{phone_number_id}",
    responses=errors_at(409, 502, 503),
    response_model=PhoneNumber,
    summary="Release the number (unassigned and given back to the carrier)",
)
def release_number(caller: Caller, number: Owned) -> PhoneNumber:
    return numbers.release(caller.account_id, number.id)
