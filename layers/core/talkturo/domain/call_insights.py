"""What a finished call's transcript and charge tell, computed without I/O: the conversation's
timing (turn latency, interruptions, who talked how long) and what the charge paid for, layer by
layer. The post-call worker writes both on the call record (SPEC §5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from talkturo.domain.catalog import EstimateBreakdown
from talkturo.domain.common import Credits, quantize_credits

if TYPE_CHECKING:  # the call record holds these models: no import of it at run time
    from talkturo.domain.calls import TranscriptMessage

COST_LAYERS = ("telephony", "transcriber", "llm", "voice", "platform")


class CallMetrics(BaseModel):
    """How the conversation went, from the transcript's timings (milliseconds since connect)."""

    caller_turns: int = Field(description="Messages the caller spoke.")
    assistant_turns: int = Field(description="Messages the assistant spoke.")
    turn_latency_p50_ms: int | None = Field(
        default=None,
        description="From the end of the caller's words to the start of the assistant's reply "
        "(median of the call's replies); none when nothing was answered.",
    )
    turn_latency_p95_ms: int | None = None
    turn_latency_max_ms: int | None = None
    interruptions: int = Field(
        description="Assistant messages the caller spoke over (cut short, `interrupted`)."
    )
    caller_talk_ms: int
    assistant_talk_ms: int
    talk_listen_ratio: float | None = Field(
        default=None,
        description="The assistant's speaking time over the caller's; none when the caller "
        "said nothing.",
    )


class CostBreakdown(BaseModel):
    """What `credits_charged` paid for, split by the per-minute rates of the assistant's choices.

    The split is proportional to the rate table's parts (telephony, transcriber, model, voice,
    platform); rounding is absorbed by `platform` so the parts add up to `total` exactly. The
    analysis after the call costs no credits (`analysis` is 0, its tokens are shown)."""

    telephony: Credits
    transcriber: Credits
    llm: Credits
    voice: Credits
    platform: Credits
    analysis: Credits = Decimal(0)
    total: Credits
    analysis_input_tokens: int = 0
    analysis_output_tokens: int = 0


def _percentile(values: Sequence[int], share: float) -> int:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def metrics_of(messages: Sequence[TranscriptMessage]) -> CallMetrics:
    """Turn latency counts each assistant message that follows the caller's words (tool and
    system messages between them do not break the pair: the latency includes the tool's time)."""
    spoken = [m for m in messages if m.role in ("user", "assistant") and m.text.strip()]
    latencies: list[int] = []
    waiting_since: int | None = None
    for message in messages:
        if message.role == "user" and message.text.strip():
            waiting_since = message.end_ms
        elif message.role == "assistant" and message.text.strip() and waiting_since is not None:
            latencies.append(max(0, message.start_ms - waiting_since))
            waiting_since = None
    caller = [m for m in spoken if m.role == "user"]
    assistant = [m for m in spoken if m.role == "assistant"]
    caller_ms = sum(max(0, m.end_ms - m.start_ms) for m in caller)
    assistant_ms = sum(max(0, m.end_ms - m.start_ms) for m in assistant)
    return CallMetrics(
        caller_turns=len(caller),
        assistant_turns=len(assistant),
        turn_latency_p50_ms=_percentile(latencies, 0.5) if latencies else None,
        turn_latency_p95_ms=_percentile(latencies, 0.95) if latencies else None,
        turn_latency_max_ms=max(latencies) if latencies else None,
        interruptions=sum(1 for m in assistant if m.interrupted),
        caller_talk_ms=caller_ms,
        assistant_talk_ms=assistant_ms,
        talk_listen_ratio=round(assistant_ms / caller_ms, 2) if caller_ms else None,
    )


def cost_breakdown(
    charged: Decimal,
    rates: EstimateBreakdown,
    *,
    analysis_input_tokens: int = 0,
    analysis_output_tokens: int = 0,
) -> CostBreakdown:
    """Split `charged` in the proportions of `rates` (credits per minute by layer)."""
    parts: dict[str, Decimal] = {}
    if rates.total > 0 and charged > 0:
        for layer in COST_LAYERS[:-1]:
            parts[layer] = quantize_credits(charged * getattr(rates, layer) / rates.total)
    else:
        parts = {layer: Decimal(0) for layer in COST_LAYERS[:-1]}
    parts["platform"] = quantize_credits(charged) - sum(parts.values(), Decimal(0))
    if parts["platform"] < 0:  # rounding up overshot a platform share of (almost) nothing
        largest = max(COST_LAYERS[:-1], key=lambda layer: parts[layer])
        parts[largest] += parts["platform"]
        parts["platform"] = Decimal(0)
    return CostBreakdown(
        **parts,
        total=quantize_credits(charged),
        analysis_input_tokens=analysis_input_tokens,
        analysis_output_tokens=analysis_output_tokens,
    )
