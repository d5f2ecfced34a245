"""`python -m benchmarks.extraction`: per-field precision, recall and abstention of the analysis
on the golden set (tests/data/analysis_golden), for the offline extractor and, when
`LOCAL_LLM_BASE_URL` is set, for that model through the real analysis path.

- precision: accepted values that equal the expected one, over all accepted values;
- recall: expected values accepted and equal, over all expected values;
- abstention: golden calls where the field was left empty (abstained or rejected), over all.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from talkturo.analysis import analyze
from talkturo.domain.analysis import AnalysisConfig, AnalysisContext, AnalysisModel, KnownField
from talkturo.domain.calls import TranscriptMessage
from talkturo.voice.providers.registry import Providers

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "analysis_golden"


@dataclass
class Case:
    id: str
    messages: list[TranscriptMessage]
    context: AnalysisContext
    expected: dict[str, Any]
    skipped: str | None


@dataclass
class FieldScore:
    accepted: int = 0
    correct: int = 0
    expected: int = 0
    empty: int = 0
    calls: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.correct / self.accepted if self.accepted else None

    @property
    def recall(self) -> float | None:
        return self.correct / self.expected if self.expected else None

    @property
    def abstention(self) -> float:
        return self.empty / self.calls if self.calls else 0.0


def load(folder: Path = GOLDEN) -> tuple[AnalysisConfig, list[Case]]:
    setup = yaml.safe_load((folder / "fields.yaml").read_text())
    config = AnalysisConfig.model_validate(
        {"extraction_fields": setup["fields"], "create_missing_fields": True}
    )
    custom = [KnownField.model_validate(item) for item in setup["custom_fields"]]
    cases: list[Case] = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "fields.yaml":
            continue
        for raw in yaml.safe_load(path.read_text()):
            messages = [
                TranscriptMessage(
                    role=entry[0],
                    text=entry[1],
                    name=entry[2] if len(entry) > 2 else None,
                    start_ms=index * 1000,
                    end_ms=index * 1000 + 900,
                )
                for index, entry in enumerate(raw.get("transcript") or [])
            ]
            context = AnalysisContext(
                call_date=date.fromisoformat(str(raw.get("call_date", setup["call_date"]))),
                llm=AnalysisModel(provider="openai", model="gpt-4o-mini"),
                success_criteria="The caller gives their details and agrees to a meeting.",
                direction="outbound",
                outcome=raw.get("outcome", "answered"),
                answered_by=raw.get("answered_by"),
                ended_reason="caller_hung_up",
                custom_fields=custom,
            )
            expected = {str(k): _plain(v) for k, v in (raw.get("expected") or {}).items()}
            cases.append(Case(raw["id"], messages, context, expected, raw.get("skipped")))
    return config, cases


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


async def evaluate(
    config: AnalysisConfig, cases: list[Case], env: Mapping[str, str]
) -> tuple[dict[str, FieldScore], list[str]]:
    """Scores per field ("contact.email" …) and the cases whose skip reason was not expected."""
    scores = {f"{f.target}.{f.key}": FieldScore() for f in config.extraction_fields}
    skip_errors: list[str] = []
    for case in cases:
        result = await analyze(config, case.messages, case.context, models=Providers(env))
        if result.skipped_extraction_reason != case.skipped:
            skip_errors.append(f"{case.id}: {result.skipped_extraction_reason} != {case.skipped}")
        for item in result.extracted:
            name = f"{item.target}.{item.key}"
            score = scores[name]
            score.calls += 1
            wanted = case.expected.get(name)
            if wanted is not None:
                score.expected += 1
            if item.status != "accepted":
                score.empty += 1
                continue
            score.accepted += 1
            if item.value == wanted:
                score.correct += 1
            else:
                score.wrong.append(f"{case.id}: {item.value!r} (expected {wanted!r})")
    return scores, skip_errors


def totals(scores: Mapping[str, FieldScore]) -> FieldScore:
    total = FieldScore()
    for score in scores.values():
        total.accepted += score.accepted
        total.correct += score.correct
        total.expected += score.expected
        total.empty += score.empty
        total.calls += score.calls
    return total


def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{value * 100:3.0f}%"


def report(title: str, scores: Mapping[str, FieldScore], skip_errors: list[str]) -> None:
    print(f"\n{title}")
    print(f"  {'field':<24} {'precision':>9} {'recall':>7} {'abstention':>10}  accepted/expected")
    for name, score in [*scores.items(), ("all fields", totals(scores))]:
        print(
            f"  {name:<24} {_pct(score.precision):>9} {_pct(score.recall):>7} "
            f"{_pct(score.abstention):>10}  {score.accepted}/{score.expected}"
        )
    for name, score in scores.items():
        for wrong in score.wrong:
            print(f"  wrong {name}: {wrong}")
    for error in skip_errors:
        print(f"  skip reason differs: {error}")


def run() -> None:
    config, cases = load()
    print(
        f"Extraction on the golden set ({len(cases)} calls, {len(config.extraction_fields)} fields)"
    )
    offline_env = {"TALKTURO_OFFLINE_PROVIDERS": "1"}
    scores, skips = asyncio.run(evaluate(config, cases, offline_env))
    report("offline extractor (deterministic)", scores, skips)
    local = os.environ.get("LOCAL_LLM_BASE_URL")
    if local:
        env = {key: value for key, value in os.environ.items()}
        scores, skips = asyncio.run(evaluate(config, cases, env))
        model = os.environ.get("LOCAL_LLM_MODEL") or "(the server's default)"
        report(f"model at LOCAL_LLM_BASE_URL, {model}", scores, skips)
    else:
        print("\n(set LOCAL_LLM_BASE_URL to measure a model on the same calls)")


if __name__ == "__main__":
    run()
