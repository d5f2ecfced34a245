"""`python -m benchmarks spoken_emails`: emails said on a call, read by the offline analysis.

The 25 phrasings of tests/data/spoken_emails.yaml ("My email is jane at example dot com."),
each spoken by an offline voice (Piper, espeak-ng) as 8 kHz mu-law, transcribed by an offline
transcriber (Whisper tiny.en, pocketsphinx) as the voice service streams it, then placed as the
caller's answer in a short call and analysed by the offline analysis (its deterministic
extractor and the same checks as any value: the quote must hold the address). Counted per
voice and transcriber: addresses right, wrong, and left empty (abstained or rejected).
Needs the `speech` extra.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from talkturo.analysis import analyze
from talkturo.domain.analysis import AnalysisConfig, AnalysisContext, AnalysisModel
from talkturo.domain.calls import TranscriptMessage
from talkturo.simcaller.audio import Engine, speak
from talkturo.voice.providers.registry import Providers

CASES = Path(__file__).resolve().parent.parent / "tests" / "data" / "spoken_emails.yaml"
CONFIG = AnalysisConfig.model_validate(
    {"extraction_fields": [{"key": "email", "description": "The caller's email address"}]}
)
CONTEXT = AnalysisContext(
    call_date=date(2026, 3, 2),
    llm=AnalysisModel(provider="openai", model="gpt-4o-mini"),
    success_criteria="The caller gives their email.",
    direction="outbound",
    outcome="answered",
    ended_reason="caller_hung_up",
)


@dataclass
class Score:
    right: int = 0
    empty: int = 0
    wrong: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)


def cases() -> list[tuple[str, str]]:
    return [(str(c["said"]), str(c["email"])) for c in yaml.safe_load(CASES.read_text())]


def _call(answer: str) -> list[TranscriptMessage]:
    turns = [
        ("assistant", "Hi, this is Ana from Acme. What's the best email to send the offer to?"),
        ("user", answer),
        ("assistant", "Great, thank you."),
        ("user", "You're welcome, bye."),
    ]
    return [
        TranscriptMessage(role=role, text=text, start_ms=i * 1000, end_ms=i * 1000 + 900)
        for i, (role, text) in enumerate(turns)
    ]


async def evaluate(voice: Engine, transcriber: str) -> Score:
    from benchmarks.speech import transcribe_all

    said = cases()
    audios = [speak(text, engine=voice).audio for text, _ in said]
    heard = await transcribe_all(transcriber, audios)
    score = Score(heard=heard)
    for (_, expected), text in zip(said, heard, strict=True):
        result = await analyze(
            CONFIG, _call(text), CONTEXT, models=Providers({"TALKTURO_OFFLINE_PROVIDERS": "1"})
        )
        (email,) = result.extracted
        if email.status != "accepted":
            score.empty += 1
        elif email.value == expected:
            score.right += 1
        else:
            score.wrong.append(f"{email.value} (heard {text!r}, said {expected})")
    return score


def run() -> None:
    from talkturo.simcaller.audio import espeak_available

    voices: list[Engine] = ["piper"] + (["espeak-ng"] if espeak_available() else [])
    print(f"\nSpoken emails through the offline analysis ({len(cases())} phrasings)")
    print(f"{'voice':<10} {'transcriber':<12} {'right':>6} {'wrong':>6} {'empty':>6}")
    for voice in voices:
        for transcriber in ("whisper", "pocketsphinx"):
            score = asyncio.run(evaluate(voice, transcriber))
            wrong = len(score.wrong)
            print(f"{voice:<10} {transcriber:<12} {score.right:>6} {wrong:>6} {score.empty:>6}")
            for line in score.wrong:
                print(f"    wrong: {line}")


if __name__ == "__main__":
    run()
