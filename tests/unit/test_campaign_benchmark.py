"""The campaign benchmark's arithmetic: which dial refilled which freed slot."""

from __future__ import annotations

import os

import pytest

from benchmarks.campaign import Placed, _due_times, refills


def test_each_end_is_refilled_by_the_first_dial_of_a_contact_due_then() -> None:
    # Two slots. A and B start at 0; A ends at 10 and C (due since the start) takes the slot at
    # 10.4. B ends at 12 with nobody due (A's retry is due 3 s after A's end, at 13): its slot
    # waited for a contact, not for the engine, and is not counted.
    calls = [
        Placed("A", 0.0, 10.0),
        Placed("B", 0.1, 12.0),
        Placed("C", 10.4, 20.0),
        Placed("A", 13.2, 15.0),
    ]
    due = _due_times(calls, started=0.0, delay=3.0)
    assert due == {"A": [0.0, 13.0, 18.0], "B": [0.0, 15.0], "C": [0.0, 23.0]}
    pairs = refills(calls, due)
    assert [(end, call.to, call.attempt) for end, call in pairs] == [(10.0, "C", 1)]
    assert pairs[0][1].placed_at - pairs[0][0] == pytest.approx(0.4)


def test_a_dial_refills_one_end_only() -> None:
    # Both slots free at 5; one contact waits; it refills the first end, the second has nobody.
    calls = [Placed("A", 0.0, 5.0), Placed("B", 0.0, 5.5), Placed("C", 5.2, 9.0)]
    pairs = refills(calls, _due_times(calls, started=0.0, delay=60.0))
    assert [(end, call.to) for end, call in pairs] == [(5.0, "C")]


def test_the_engine_part_leaves_the_environment_as_it_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The latency part's platform inherits the environment: a public URL left by the engine
    # part sent its carrier's callbacks elsewhere, and its first campaign never completed.
    from benchmarks import campaign

    monkeypatch.setenv("TALKTURO_DIAL_CALLS_PER_SECOND", "7")
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    seen: dict[str, str | None] = {}

    def run(size: int) -> dict[str, object]:
        seen["url"] = os.environ.get("PUBLIC_BASE_URL")
        seen["cps"] = os.environ.get("TALKTURO_DIAL_CALLS_PER_SECOND")
        return {"size": size}

    monkeypatch.setattr(campaign, "_engine_run", run)
    assert campaign.engine_run(5) == {"size": 5}
    assert seen == {"url": "https://hooks.example.com", "cps": "100"}
    assert "PUBLIC_BASE_URL" not in os.environ
    assert os.environ["TALKTURO_DIAL_CALLS_PER_SECOND"] == "7"
