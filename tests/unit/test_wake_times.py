"""A campaign wake's time, as the wake state machine's Wait reads it: UTC, never early."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from talkturo.workflows import wake_at, wake_input


def test_a_time_between_seconds_is_rounded_up_never_down() -> None:
    assert wake_at(datetime(2026, 12, 2, 14, 0, 0, 1, tzinfo=UTC)) == "2026-12-02T14:00:01Z"
    assert wake_at(datetime(2026, 12, 2, 14, 0, 59, 999_999, tzinfo=UTC)) == (
        "2026-12-02T14:01:00Z"
    )


def test_a_whole_second_is_kept_and_any_zone_becomes_utc() -> None:
    new_york_winter = timezone(timedelta(hours=-5))
    assert wake_at(datetime(2026, 12, 2, 9, 0, tzinfo=new_york_winter)) == "2026-12-02T14:00:00Z"
    # The last second of a year rounds into the next one.
    assert wake_at(datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)) == (
        "2027-01-01T00:00:00Z"
    )


def test_the_input_carries_the_time_and_the_job_as_it_is() -> None:
    job = {"kind": "wake", "account_id": "acct_1", "campaign_id": "cmp_1", "reason": "window"}
    assert wake_input(datetime(2026, 12, 2, 14, 0, tzinfo=UTC), job) == {
        "wake_at": "2026-12-02T14:00:00Z",
        "message": job,
    }
