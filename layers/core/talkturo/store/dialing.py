"""An account's dialing settings (the admin's override of the dialing rules)."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from talkturo.domain.dialing import DialingSettings
from talkturo.store import keys
from talkturo.store.table import Document, connection

DIALING_SK = "DIALING"


class DialingItem(Document):
    """PK=A#<acct> SK=DIALING: absent until an admin sets something (the defaults apply)."""


def get(account_id: str) -> DialingSettings:
    connection()
    try:
        item = DialingItem.get(keys.account(account_id), DIALING_SK)
    except DoesNotExist:
        return DialingSettings()
    return DialingSettings.model_validate_json(item.doc)


def put(account_id: str, settings: DialingSettings) -> None:
    """Replace the settings (an admin states them whole: last write wins)."""
    connection()
    DialingItem(keys.account(account_id), DIALING_SK, doc=settings.model_dump_json()).save(
        add_version_condition=False
    )
