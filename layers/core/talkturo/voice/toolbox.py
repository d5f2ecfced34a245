"""The assistant's in-call tools as the functions the model sees.

`opt_out` is offered on every call, whatever the assistant's tools: a caller's request not to
be called again is always honoured. `end_call` and `transfer_call` are described here (their
behaviour is the session's); a scheduling tool becomes `check_availability` and `book_meeting`
(tools/scheduling.py); a webhook tool becomes one function with the tool's own name and
JSON-schema parameters (tools/webhook.py).
`info_extraction` runs after the call and is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence

from talkturo.domain.assistant_tools import (
    AssistantTool,
    EndCallTool,
    SchedulingTool,
    TransferCallTool,
    WebhookTool,
)
from talkturo.voice.providers.base import ToolSpec

OPT_OUT_SPEC = ToolSpec(
    "opt_out",
    "Call this at once when the caller asks not to be called again (stop calling, take me off "
    "your list, do not call me), in any words or language. It marks them do-not-call, confirms "
    "it to them and ends the call: do not argue or try to keep them on the line.",
    {"type": "object", "properties": {"reason": {"type": "string"}}},
)


def tool_specs(tools: Sequence[AssistantTool]) -> tuple[ToolSpec, ...]:
    """The functions the model is offered: the assistant's enabled in-call tools and opt_out."""
    specs: list[ToolSpec] = []
    for tool in tools:
        if not tool.enabled:
            continue
        if isinstance(tool, EndCallTool):
            specs.append(
                ToolSpec(
                    "end_call",
                    "End the call once the conversation is over or the caller wants to "
                    "leave. Say goodbye first.",
                    {
                        "type": "object",
                        "properties": {"reason": {"type": "string"}},
                    },
                )
            )
        elif isinstance(tool, TransferCallTool):
            names = [d.name for d in tool.config.destinations]
            described = "; ".join(
                f"{d.name}: {d.description}" if d.description else d.name
                for d in tool.config.destinations
            )
            specs.append(
                ToolSpec(
                    "transfer_call",
                    f"Transfer the caller to a person. Destinations: {described}. Tell the "
                    "caller you are transferring them before calling this.",
                    {
                        "type": "object",
                        "properties": {
                            "destination": {"type": "string", "enum": names},
                            "reason": {"type": "string"},
                        },
                        "required": ["destination"],
                    },
                )
            )
        elif isinstance(tool, SchedulingTool):
            from talkturo.voice.tools import scheduling

            specs.extend(scheduling.specs(tool.config))
        elif isinstance(tool, WebhookTool):
            from talkturo.voice.tools import webhook

            specs.append(webhook.spec_of(tool.config))
    specs.append(OPT_OUT_SPEC)
    return tuple(specs)
