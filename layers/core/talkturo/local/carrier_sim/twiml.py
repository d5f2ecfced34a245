"""TwiML, the XML the platform answers the carrier with, parsed into the verbs the simulator runs.

Supported: <Say>, <Pause length>, <Hangup/>, <Reject reason>, <Redirect method>url</Redirect>,
<Connect action method><Stream url><Parameter name value/></Stream></Connect>. Other verbs are
kept as `Unsupported` (the call skips them, and the call record says so). A document that is not
XML, or whose root is not <Response>, is error 12100 (document parse failure), as on Twilio.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin

PARSE_FAILURE = 12100
INVALID_URL = 11100


class TwimlError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Say:
    text: str
    voice: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Pause:
    seconds: float = 1.0


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Reject:
    reason: str = "rejected"


@dataclass(frozen=True)
class Redirect:
    url: str
    method: str = "POST"


@dataclass(frozen=True)
class Stream:
    url: str
    parameters: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    action: str | None = None  # the <Connect>'s action URL
    method: str = "POST"


@dataclass(frozen=True)
class Unsupported:
    verb: str


Verb = Say | Pause | Hangup | Reject | Redirect | Stream | Unsupported


def _method(value: str | None) -> str:
    method = (value or "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError(PARSE_FAILURE, f"method must be GET or POST, not {value!r}")
    return method


def parse(document: str, base_url: str | None = None) -> list[Verb]:
    """The verbs of a TwiML document; relative URLs resolved against `base_url`."""
    text = document.strip()
    if not text:
        raise TwimlError(PARSE_FAILURE, "empty TwiML document")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise TwimlError(PARSE_FAILURE, "TwiML documents have no DTD")
    try:
        root = ET.fromstring(text)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise TwimlError(PARSE_FAILURE, f"document parse failure: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(PARSE_FAILURE, f"the root element is <{root.tag}>, not <Response>")

    def absolute(url: str) -> str:
        url = url.strip()
        if not url:
            raise TwimlError(PARSE_FAILURE, "an empty URL")
        return urljoin(base_url, url) if base_url else url

    verbs: list[Verb] = []
    for element in root:
        tag = element.tag
        if tag == "Say":
            verbs.append(
                Say(
                    text="".join(element.itertext()).strip(),
                    voice=element.get("voice"),
                    language=element.get("language"),
                )
            )
        elif tag == "Pause":
            try:
                seconds = float(element.get("length", "1"))
            except ValueError:
                raise TwimlError(PARSE_FAILURE, "<Pause length> is not a number") from None
            verbs.append(Pause(max(0.0, seconds)))
        elif tag == "Hangup":
            verbs.append(Hangup())
        elif tag == "Reject":
            verbs.append(Reject(element.get("reason", "rejected")))
        elif tag == "Redirect":
            verbs.append(Redirect(absolute(element.text or ""), _method(element.get("method"))))
        elif tag == "Connect":
            streams = [child for child in element if child.tag == "Stream"]
            if not streams:
                verbs.append(Unsupported("Connect/" + "/".join(c.tag for c in element)))
                continue
            stream = streams[0]
            url = stream.get("url", "").strip()
            if not url.startswith(("wss://", "ws://")):
                raise TwimlError(PARSE_FAILURE, f"<Stream url> must be a wss:// URL, not {url!r}")
            parameters = {
                p.get("name", ""): p.get("value", "")
                for p in stream
                if p.tag == "Parameter" and p.get("name")
            }
            action = element.get("action")
            verbs.append(
                Stream(
                    url=url,
                    parameters=parameters,
                    name=stream.get("name"),
                    action=absolute(action) if action else None,
                    method=_method(element.get("method")),
                )
            )
        else:
            verbs.append(Unsupported(tag))
    return verbs
