"""The call's transcript as it happens, and the conversation the model sees.

Both come from the same entries: an assistant message holds what the caller actually heard
(cut at the interruption when they spoke over it), so the model is never told it said something
the caller did not hear. Times are milliseconds since the media stream started.
"""

from __future__ import annotations

from talkturo.domain.calls import TranscriptMessage, TranscriptToolCall
from talkturo.voice.providers.base import ChatMessage, ToolCall


class TranscriptLog:
    def __init__(self, earlier: list[TranscriptMessage] | None = None, offset_ms: int = 0) -> None:
        # A resumed call (a transfer that failed) continues the transcript it had.
        self.messages: list[TranscriptMessage] = list(earlier or [])
        self.offset_ms = offset_ms

    def _ms(self, seconds: float) -> int:
        return self.offset_ms + max(0, round(seconds * 1000))

    def system(self, text: str, at: float) -> None:
        ms = self._ms(at)
        self.messages.append(TranscriptMessage(role="system", text=text, start_ms=ms, end_ms=ms))

    def user(self, text: str, start: float, end: float) -> None:
        self.messages.append(
            TranscriptMessage(
                role="user", text=text, start_ms=self._ms(start), end_ms=self._ms(end)
            )
        )

    def assistant(
        self,
        text: str,
        start: float,
        end: float,
        *,
        interrupted: bool = False,
        tool_calls: list[ToolCall] | None = None,
    ) -> None:
        calls = (
            [TranscriptToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in tool_calls]
            if tool_calls
            else None
        )
        if not text and not calls and not interrupted:
            return
        self.messages.append(
            TranscriptMessage(
                role="assistant",
                text=text,
                start_ms=self._ms(start),
                end_ms=self._ms(end),
                interrupted=interrupted,
                tool_calls=calls,
            )
        )

    def tool(self, call: ToolCall, result: str, start: float, end: float) -> None:
        self.messages.append(
            TranscriptMessage(
                role="tool",
                text=result,
                start_ms=self._ms(start),
                end_ms=self._ms(end),
                tool_call_id=call.id,
                name=call.name,
            )
        )

    def chat_history(self) -> tuple[ChatMessage, ...]:
        """The conversation for the model: system notes are left out (they are for people)."""
        history: list[ChatMessage] = []
        for message in self.messages:
            if message.role == "user":
                history.append(ChatMessage(role="user", text=message.text))
            elif message.role == "assistant":
                calls = tuple(
                    ToolCall(c.id, c.name, c.arguments) for c in (message.tool_calls or [])
                )
                text = message.text + (" —" if message.interrupted and message.text else "")
                history.append(ChatMessage(role="assistant", text=text, tool_calls=calls))
            elif message.role == "tool":
                history.append(
                    ChatMessage(
                        role="tool",
                        text=message.text,
                        tool_call_id=message.tool_call_id,
                        name=message.name,
                    )
                )
        return tuple(history)

    @property
    def end_ms(self) -> int:
        return max((m.end_ms for m in self.messages), default=self.offset_ms)
