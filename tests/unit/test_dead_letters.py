"""What a dead letter's log line and record show of its message."""

from __future__ import annotations

import json
from typing import get_args

from talkturo.cli import DEAD_LETTER_QUEUES
from talkturo.domain.dead_letters import EXCERPT_MAX, DeadLetterQueue, excerpt


def test_secret_named_values_are_masked_at_any_depth() -> None:
    body = json.dumps(
        {
            "account_id": "acct_1",
            "auth_token": "t0k3n",
            "nested": {"api_key": "tk_live", "items": [{"Password": "hunter2", "n": 1}]},
        }
    )
    shown = excerpt(body)
    assert json.loads(shown) == {
        "account_id": "acct_1",
        "auth_token": "***",
        "nested": {"api_key": "***", "items": [{"Password": "***", "n": 1}]},
    }
    for secret in ("t0k3n", "tk_live", "hunter2"):
        assert secret not in shown


def test_a_long_body_is_cut_and_a_non_json_one_is_not_shown() -> None:
    shown = excerpt(json.dumps({"notes": "x" * 1000}))
    assert len(shown) == EXCERPT_MAX and shown.endswith("…")
    assert excerpt("password=hunter2") == "<not JSON, 16 characters>"


def test_the_command_offers_exactly_the_queues_the_api_knows() -> None:
    assert get_args(DeadLetterQueue) == DEAD_LETTER_QUEUES
