"""The call's timing and the split of its charge, from the transcript and the rate table."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from talkturo.domain.call_insights import COST_LAYERS, cost_breakdown, metrics_of
from talkturo.domain.calls import TranscriptMessage
from talkturo.domain.catalog import EstimateBreakdown

RATES = EstimateBreakdown(
    telephony=Decimal("0.1000"),
    llm=Decimal("0.0600"),
    voice=Decimal("0.1500"),
    transcriber=Decimal("0.0300"),
    platform=Decimal("0.0500"),
    total=Decimal("0.3900"),
)
credit_amounts = st.decimals(min_value=0, max_value=10_000, places=4)


def _said(role: str, text: str, start: int, end: int) -> TranscriptMessage:
    return TranscriptMessage(role=role, text=text, start_ms=start, end_ms=end)  # type: ignore[arg-type]


@given(credit_amounts)
def test_the_parts_add_up_to_the_charge_exactly(charged: Decimal) -> None:
    cost = cost_breakdown(charged, RATES)
    total = sum((getattr(cost, layer) for layer in COST_LAYERS), Decimal(0)) + cost.analysis
    assert total == cost.total == charged
    assert all(getattr(cost, layer) >= 0 for layer in COST_LAYERS)


@given(credit_amounts)
def test_a_rate_table_without_a_platform_share_never_shows_a_negative_part(
    charged: Decimal,
) -> None:
    rates = RATES.model_copy(update={"platform": Decimal(0), "total": Decimal("0.3400")})
    cost = cost_breakdown(charged, rates)
    assert all(getattr(cost, layer) >= 0 for layer in COST_LAYERS)
    assert sum((getattr(cost, layer) for layer in COST_LAYERS), Decimal(0)) == charged


def test_the_split_follows_the_rates() -> None:
    cost = cost_breakdown(Decimal("3.9000"), RATES)
    assert (cost.telephony, cost.llm, cost.voice) == (Decimal(1), Decimal("0.6"), Decimal("1.5"))
    assert (cost.transcriber, cost.platform) == (Decimal("0.3"), Decimal("0.5"))


def test_a_tool_between_question_and_answer_counts_in_the_latency() -> None:
    messages = [
        _said("user", "book it", 0, 1000),
        TranscriptMessage(role="tool", text="{}", start_ms=1200, end_ms=1900, name="book"),
        _said("assistant", "Booked.", 2500, 3000),
        _said("user", "   ", 3100, 3200),  # noise: not a turn
    ]
    metrics = metrics_of(messages)
    assert metrics.turn_latency_p50_ms == 1500 and metrics.caller_turns == 1


def test_a_call_where_the_caller_never_spoke_has_no_latency_or_ratio() -> None:
    metrics = metrics_of([_said("assistant", "Hello?", 0, 800)])
    assert metrics.turn_latency_p50_ms is None and metrics.talk_listen_ratio is None
    assert metrics.assistant_turns == 1 and metrics.interruptions == 0


def test_info_extraction_tool_fields_join_the_analysis_fields() -> None:
    from talkturo.domain.assistants import AssistantConfig
    from talkturo.domain.call_analysis import effective_config

    base = {
        "name": "a",
        "system_prompt": "p",
        "llm": {"provider": "openai", "model": "gpt-4.1-mini"},
        "voice": {"provider": "cartesia", "model": "sonic-2", "voice_id": "v"},
        "transcriber": {"provider": "deepgram", "model": "nova-3", "language": "en"},
        "telephony": {"call_region": "us"},
        "analysis": {
            "extraction_fields": [
                {"key": "budget", "description": "Their budget", "type": "number"}
            ]
        },
        "tools": [
            {
                "type": "info_extraction",
                "config": {
                    "allow_create_fields": True,
                    "fields": [
                        {"key": "budget", "description": "ignored: the block has it"},
                        {"key": "email", "description": "Their email"},
                        {"key": "phone", "description": "reserved"},
                        {"key": "team_size", "description": "People", "type": "number"},
                    ],
                },
            }
        ],
    }
    config, notes = effective_config(AssistantConfig.model_validate(base))
    keys = [(f.key, f.type) for f in config.extraction_fields]
    assert keys == [("budget", "number"), ("email", None), ("team_size", "number")]
    assert config.create_missing_fields is True
    assert len(notes) == 1 and "contact.phone" in notes[0]
