"""TwiML, the XML the platform answers the carrier with, parsed into the verbs the simulator runs.

Supported: <Say>, <Pause length>, <Hangup/>, <Reject reason>, <Redirect method>url</Redirect>,
<Connect action method><Stream url><Parameter name value/></Stream></Connect>, <Play loop>url</Play>
and <Dial action method timeout callerId answerOnBridge ringTone> with a number (bare text or
<Number sendDigits>) or a <Conference startConferenceOnEnter endConferenceOnExit waitUrl
waitMethod beep muted>name</Conference>. Other verbs (and other <Dial> nouns) are kept as
`Unsupported` (the call skips them, and the call record says so). A document that is not XML,
or whose root is not <Response>, is error 12100 (document parse failure), as on Twilio.

Attribute values and defaults are Twilio's (https://www.twilio.com/docs/voice/twiml/dial,
/conference, /play): Dial timeout 30 s, method POST; Conference startConferenceOnEnter true,
endConferenceOnExit false, beep true, waitMethod POST, no waitUrl = Twilio's hold music and an
empty waitUrl = silence; Play loop 1, 0 = until the call ends.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

PARSE_FAILURE = 12100
INVALID_URL = 11100
# SendDigits (and <Number sendDigits>): keys, and w for half a second's wait; 32 at most.
SEND_DIGITS = re.compile(r"[0-9#*w]{1,32}")


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
class Play:
    url: str
    loop: int = 1  # 0: over and over, until the call (or the wait) ends


@dataclass(frozen=True)
class Conference:
    name: str
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str | None = None  # None: the carrier's hold music; "": silence
    wait_method: str = "POST"
    beep: str = "true"  # true, false, onEnter, onExit
    muted: bool = False


@dataclass(frozen=True)
class Dial:
    number: str | None = None
    conference: Conference | None = None
    action: str | None = None
    method: str = "POST"
    timeout: int = 30
    caller_id: str | None = None
    answer_on_bridge: bool = False
    ring_tone: str | None = None
    send_digits: str | None = None  # <Number sendDigits>: keys played once the number answers


@dataclass(frozen=True)
class Unsupported:
    verb: str


Verb = Say | Pause | Hangup | Reject | Redirect | Stream | Play | Dial | Unsupported
DIAL_TIMEOUT_RANGE = (5, 600)  # Twilio keeps <Dial timeout> within it
BEEP_VALUES = frozenset({"true", "false", "onEnter", "onExit"})


def _method(value: str | None) -> str:
    method = (value or "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError(PARSE_FAILURE, f"method must be GET or POST, not {value!r}")
    return method


def _flag(element: ET.Element, name: str, default: bool) -> bool:
    value = element.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise TwimlError(PARSE_FAILURE, f"<{element.tag} {name}> must be true or false")
    return value.lower() == "true"


def _integer(element: ET.Element, name: str, default: int) -> int:
    value = element.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise TwimlError(PARSE_FAILURE, f"<{element.tag} {name}> is not a whole number") from None


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
        elif tag == "Play":
            loop = _integer(element, "loop", 1)
            if loop < 0:
                raise TwimlError(PARSE_FAILURE, "<Play loop> cannot be negative")
            verbs.append(Play(absolute(element.text or ""), loop))
        elif tag == "Dial":
            verbs.append(_dial(element, absolute))
        else:
            verbs.append(Unsupported(tag))
    return verbs


def _dial(element: ET.Element, absolute: Callable[[str], str]) -> Dial | Unsupported:
    nouns = list(element)
    number: str | None = None
    send_digits: str | None = None
    conference: Conference | None = None
    if not nouns:
        number = (element.text or "").strip() or None
    elif nouns[0].tag == "Number":
        number = (nouns[0].text or "").strip() or None
        send_digits = nouns[0].get("sendDigits") or None
        if send_digits is not None and not SEND_DIGITS.fullmatch(send_digits):
            raise TwimlError(PARSE_FAILURE, f"<Number sendDigits> cannot be {send_digits!r}")
    elif nouns[0].tag == "Conference":
        noun = nouns[0]
        name = (noun.text or "").strip()
        if not name:
            raise TwimlError(PARSE_FAILURE, "<Conference> needs a name")
        wait_url = noun.get("waitUrl")
        beep = noun.get("beep", "true")
        if beep not in BEEP_VALUES and beep.lower() not in BEEP_VALUES:
            raise TwimlError(PARSE_FAILURE, f"<Conference beep> cannot be {beep!r}")
        conference = Conference(
            name=name,
            start_conference_on_enter=_flag(noun, "startConferenceOnEnter", True),
            end_conference_on_exit=_flag(noun, "endConferenceOnExit", False),
            wait_url=absolute(wait_url) if wait_url and wait_url.strip() else wait_url,
            wait_method=_method(noun.get("waitMethod")),
            beep=beep if beep in BEEP_VALUES else beep.lower(),
            muted=_flag(noun, "muted", False),
        )
    else:
        return Unsupported("Dial/" + "/".join(noun.tag for noun in nouns))
    if number is None and conference is None:
        raise TwimlError(PARSE_FAILURE, "<Dial> has nothing to dial")
    low, high = DIAL_TIMEOUT_RANGE
    action = element.get("action")
    return Dial(
        number=number,
        conference=conference,
        action=absolute(action) if action else None,
        method=_method(element.get("method")),
        timeout=min(high, max(low, _integer(element, "timeout", 30))),
        caller_id=(element.get("callerId") or "").strip() or None,
        answer_on_bridge=_flag(element, "answerOnBridge", False),
        ring_tone=element.get("ringTone") or None,
        send_digits=send_digits,
    )
