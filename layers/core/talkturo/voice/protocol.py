"""Twilio Media Streams, the service's side: the messages a bidirectional <Connect><Stream> sends
and the ones the service sends back.

From the carrier: `connected`, then `start` (streamSid, callSid, customParameters, mediaFormat
audio/x-mulaw 8000 Hz mono), `media` (base64 mu-law, `timestamp` in ms since the stream started),
`dtmf`, `mark` (echo of a mark once the audio before it has played, or was cleared), `stop`.
To the carrier: `media` (base64 mu-law to play), `mark` (named point in the outgoing audio),
`clear` (drop the audio not yet played). Outgoing messages carry the streamSid.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field


class ProtocolError(ValueError):
    """Not a Media Streams message the service understands."""


@dataclass(frozen=True)
class Connected:
    protocol: str = "Call"


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True)
class Media:
    payload: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    pass


Inbound = Connected | Start | Media | Dtmf | Mark | Stop


def parse(raw: str | bytes) -> Inbound | None:
    """The message, or None for events the service ignores; ProtocolError when malformed."""
    try:
        message = json.loads(raw)
        event = message["event"]
    except (ValueError, KeyError, TypeError) as error:
        raise ProtocolError("not a Media Streams message") from error
    try:
        if event == "media":
            media = message["media"]
            if media.get("track", "inbound") not in ("inbound", "inbound_track"):
                return None
            return Media(
                base64.b64decode(media["payload"], validate=True),
                int(media.get("timestamp") or 0),
            )
        if event == "dtmf":
            return Dtmf(str(message["dtmf"]["digit"]))
        if event == "mark":
            return Mark(str(message["mark"]["name"]))
        if event == "start":
            start = message["start"]
            fmt = start.get("mediaFormat") or {}
            return Start(
                stream_sid=str(start.get("streamSid") or message["streamSid"]),
                call_sid=str(start.get("callSid", "")),
                account_sid=str(start.get("accountSid", "")),
                parameters={
                    str(k): str(v) for k, v in (start.get("customParameters") or {}).items()
                },
                encoding=str(fmt.get("encoding", "audio/x-mulaw")),
                sample_rate=int(fmt.get("sampleRate", 8000)),
                channels=int(fmt.get("channels", 1)),
            )
        if event == "stop":
            return Stop()
        if event == "connected":
            return Connected(str(message.get("protocol", "Call")))
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as error:
        raise ProtocolError(f"malformed {event} message") from error
    return None


def media(stream_sid: str, payload: bytes) -> str:
    encoded = base64.b64encode(payload).decode()
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{encoded}"}}}}'


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
