"""The voice benchmark runs end to end (a service process, two callers, a few seconds) and its
report holds every figure with values that make sense. No timing thresholds: figures vary with
the machine; only what cannot happen whatever the machine is refused."""

from __future__ import annotations

import math

import pytest

from benchmarks import voice


def test_the_first_piece_and_the_configured_latency_come_from_the_reply() -> None:
    # "Sure, I can help with that." is cut when the 7th token (" We") shows the sentence ended.
    assert voice.first_piece_tokens() == 7
    assert voice.reply_pieces()[0] == "Sure, I can help with that."
    assert voice.provider_latency() == pytest.approx(0.15 + 0.3 + 6 / 50 + 0.1)
    assert voice.first_piece_tokens("One two three") == 3  # one piece: cut at the end


def test_two_calls_give_a_full_report() -> None:
    result = voice.run_level(2, seconds=5.0, warmup=0.5, pin=False)

    assert result.errors == []
    assert (result.calls, result.sessions) == (2, 2)
    assert result.turns >= 1
    assert result.no_reply == 0
    figures = [
        result.added_p50_ms,
        result.added_p99_ms,
        result.cpu_per_call_pct,
        result.lateness_p50_ms,
        result.lateness_p99_ms,
        result.lateness_max_ms,
        *result.stages_p50_ms.values(),
        *result.stages_p99_ms.values(),
    ]
    assert all(math.isfinite(value) for value in figures), result
    # The fakes never answer sooner than configured: a negative figure is a measuring mistake.
    assert 0 <= result.added_p50_ms <= result.added_p99_ms
    assert 0 <= result.lateness_p50_ms <= result.lateness_p99_ms <= result.lateness_max_ms
    assert 0 < result.cpu_per_call_pct < 100
    assert result.frames > 0  # the replies were sent frame by frame
    assert 0 <= result.late_frames <= result.frames
    assert set(result.stages_p50_ms) == {key for _, key in voice.STAGES}

    lines = voice.summary([result])
    text = "\n".join([voice.HEADER, voice.row(result), *lines])
    assert "added p50" in text and "CPU/call" in text and ">40ms" in text
    expected = 2 if result.late_frames == 0 else 0
    assert f"most calls per core with no frame more than 40 ms late: {expected}" in text
    assert "p50 <= 10 ms at 50 calls per core: not measured" in text
