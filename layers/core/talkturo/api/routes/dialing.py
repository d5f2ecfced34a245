"""The dialing rules an account's calls pass. A route module of its own: the account routes'
cold start does not load the rules and phone number metadata."""

from __future__ import annotations

from fastapi import APIRouter

from talkturo.api.deps import Caller
from talkturo.domain.dialing import DialingView
from talkturo.services import dialing

router = APIRouter(tags=["Account"])


@router.get(
    "/account/dialing",
    response_model=DialingView,
    summary="The dialing rules the account's calls and transfers pass",
)
def get_dialing(caller: Caller) -> DialingView:
    return dialing.view(caller.account_id)
