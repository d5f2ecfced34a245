"""Emails said on a call reach the CRM offline: the Piper voice says them on phone audio, the
Whisper stand-in transcribes them as the voice service streams them, the offline analysis
reads them (the `benchmarks.spoken_emails` set). pocketsphinx, the stand-in before, read none.
"""

from __future__ import annotations

import asyncio

from benchmarks.spoken_emails import cases, evaluate
from tests.providers.test_offline_speech import needs_speech

pytestmark = needs_speech


def test_most_spoken_emails_are_read_and_few_are_wrong() -> None:
    score = asyncio.run(evaluate("piper", "whisper"))

    # Measured: 11 of 25 right, 3 wrong (a name misheard: "brine at yahoo dot com"); the
    # bounds leave room for another CPU's arithmetic, not for a transcriber that hears no
    # addresses (pocketsphinx: 0) or an extractor that guesses.
    assert score.right >= 8, score.heard
    assert len(score.wrong) <= 5, score.wrong
    assert score.right + len(score.wrong) + score.empty == len(cases())
