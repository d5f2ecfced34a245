"""Companies of the CRM."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.companies import Company, CompanyCreate, CompanyUpdate
from talkturo.services import companies

router = APIRouter(tags=["Companies"])


@router.post(
    "/companies",
    response_model=Company,
    status_code=201,
    summary="Create a company (names are unique per account, ignoring case)",
)
def create_company(
    caller: Caller, body: CompanyCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/companies",
        body=body,
        work=lambda: companies.create(caller.account_id, body),
    )


@router.get("/companies", response_model=Page[Company], summary="List companies, newest first")
def list_companies(caller: Caller, paging: Paging) -> Page[Company]:
    return companies.list_companies(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get("/companies/{company_id}", response_model=Company, summary="Get a company")
def get_company(caller: Caller, company_id: str) -> Company:
    return companies.get(caller.account_id, company_id)


@router.patch(
    "/companies/{company_id}",
    response_model=Company,
    responses=errors_at(409),
    summary="Change a company",
)
def update_company(caller: Caller, company_id: str, changes: CompanyUpdate) -> Company:
    return companies.update(caller.account_id, company_id, changes)


@router.delete(
    "/companies/{company_id}",
    responses=errors_at(409),
    response_model=Company,
    summary="Delete a company (refused while contacts belong to it)",
)
def delete_company(caller: Caller, company_id: str) -> Company:
    return companies.delete(caller.account_id, company_id)
