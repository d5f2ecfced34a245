"""The offline analysis on the golden set (tests/data/analysis_golden): the figures that
docs/analysis.md states are the ones the evaluation command prints."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_socket import disable_socket, enable_socket

from benchmarks.extraction import evaluate, load, totals

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


@pytest.fixture(autouse=True)
def _event_loop_sockets() -> Iterator[None]:
    """The network stays blocked; an event loop's own AF_UNIX self-pipe is allowed."""
    enable_socket()
    disable_socket(allow_unix_socket=True)
    yield


def test_the_golden_set_is_large_and_varied() -> None:
    _config, cases = load()
    assert len(cases) >= 30
    assert {case.skipped for case in cases} >= {
        None,
        "voicemail",
        "ivr",
        "too_few_caller_turns",
        "no_transcript",
    }


def test_offline_figures_match_the_documented_ones() -> None:
    config, cases = load()
    scores, skip_errors = asyncio.run(evaluate(config, cases, {"TALKTURO_OFFLINE_PROVIDERS": "1"}))
    assert skip_errors == []
    overall = totals(scores)
    # Precision first: a wrong value written into the CRM is worse than an empty one.
    assert overall.precision == 1.0, [w for s in scores.values() for w in s.wrong]
    documented = re.search(
        r"offline extractor: precision (\d+)%, recall (\d+)%, (\d+)/(\d+) expected values",
        DOC.read_text(),
    )
    assert documented is not None, "docs/analysis.md states the offline figures"
    precision, recall, correct, expected = (int(g) for g in documented.groups())
    assert precision == round(overall.precision * 100)
    assert recall == round((overall.recall or 0) * 100)
    assert (correct, expected) == (overall.correct, overall.expected)
