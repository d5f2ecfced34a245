"""What the language-model adapters share: timeouts, the opening user turn some APIs need, how
an HTTP status and a streamed tool call's arguments are read."""

from __future__ import annotations

import json
import uuid
from typing import Any

# The first token of a spoken reply must come fast; a stalled stream is a failed turn the
# call loop retries once, so the SDKs' own retries (with back-off) stay off.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0
# Stands in for the caller's side when the assistant spoke first (for APIs whose history must
# open with a user turn).
CALL_CONNECTED = "(The call has connected.)"


def retryable_status(status: int) -> bool:
    """Whether trying again may help after this HTTP status (timeouts, conflicts, rate limits,
    server faults)."""
    return status in (408, 409, 429) or status >= 500


def new_call_id() -> str:
    """An id for a tool call the provider left without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool-call arguments as the model wrote them: a JSON object, else {} plus `_raw`."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}
