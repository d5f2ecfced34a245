"""The carrier's webhooks: voice URL, call status and answering-machine callbacks.

One function, `handle`, serves them whatever runs it (the Lambda behind API Gateway, or the
local platform's server): it takes the URL as the carrier called it, the headers and the form
body, and answers (status, content type, body).

Every request's X-Twilio-Signature is checked first, with the twilio SDK's RequestValidator,
against that URL and the POST parameters, keyed with the carrier account's auth token. A bad or
missing signature is 403 and nothing is read or written.

- POST /carrier/voice: inbound (no `call` in the query): the number's account, its assistant,
  inbound enabled, credits → a call record → TwiML <Connect><Stream> to the voice service with a
  signed token naming the call; otherwise a short "not available" and <Hangup/>. Outbound
  (`?call=…&account=…`, set by the dialer): the same Connect/Stream for that call.
- POST /carrier/status, /carrier/amd: the call moves forward (store.calls conditions make
  duplicated and reordered callbacks harmless). Outbound callbacks name the call in their query;
  inbound ones are found by CallSid.
- Transfers (talkturo.services.transfers decides; `?call=…&account=…` name the call):
  POST /carrier/transfer, the <Dial> action (`DialCallStatus`; `mode=warm` for the conference):
  answered → <Hangup/>; failed → <Connect><Stream> back to the voice service with the resume
  claims. POST /carrier/transfer-leg, the warm supervisor leg's status callback.
  GET|POST /carrier/wait, the conference's waitUrl: ringback played in a loop.
  GET /carrier/ringback.wav, the ringback audio itself (a static file: a request without a
  signature is served too; a present signature must be right).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from talkturo import tokens
from talkturo.config import get_settings
from talkturo.domain.calls import CallRecord, event_of_twilio
from talkturo.domain.common import utcnow
from talkturo.logs import logger

NOT_AVAILABLE = "This number is not available right now. Goodbye."
TWIML = "application/xml"
KINDS = ("voice", "status", "amd", "transfer", "transfer-leg", "wait", "ringback.wav")
# Kinds the carrier may fetch with GET (<Play> always GETs; waitMethod may be GET).
GET_KINDS = frozenset({"wait", "ringback.wav"})


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: str | bytes


def _empty(status: int) -> Answer:
    return Answer(status, "text/plain", "")


# --------------------------------------------------------------------------- signatures


def request_url(
    *, scheme: str, host: str, port: str | int | None, path: str, query: str | None
) -> str:
    """The URL as the client called it; the port only when it is not the scheme's default."""
    netloc = host
    if port and ":" not in host.rsplit("]", 1)[-1]:
        default = {"https": "443", "http": "80"}.get(scheme)
        if str(port) != default:
            netloc = f"{host}:{port}"
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def is_signed(url: str, params: Mapping[str, str], signature: str | None, auth_token: str) -> bool:
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def parse_form(body: bytes | str) -> dict[str, str]:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return dict(parse_qsl(text, keep_blank_values=True))


# --------------------------------------------------------------------------- TwiML


@lru_cache(maxsize=1)
def _token_secret_from_arn(arn: str) -> str:
    from aws_lambda_powertools.utilities.parameters import get_secret

    return str(get_secret(arn, max_age=300))


def voice_token_secret() -> str:
    settings = get_settings()
    if settings.voice_token_secret:
        return settings.voice_token_secret
    if settings.voice_token_secret_arn:
        return _token_secret_from_arn(settings.voice_token_secret_arn)
    raise RuntimeError("no voice token secret: set VOICE_TOKEN_SECRET (or VOICE_TOKEN_SECRET_ARN)")


def stream_twiml(account_id: str, call: CallRecord, **extra_claims: str) -> str:
    """<Connect><Stream> to the voice service, with a short-lived token naming the call.

    `extra_claims` tell the voice service more, e.g. that the call comes back from a failed
    transfer (`resume="transfer_failed"`, `transfer_status`, `transfer_to`)."""
    token = tokens.sign(
        {**extra_claims, "call": call.id, "account": account_id, "assistant": call.assistant_id},
        voice_token_secret(),
    )
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=get_settings().voice_stream_url)
    stream.parameter(name="token", value=token)
    response.append(connect)
    return str(response)


def not_available_twiml() -> str:
    response = VoiceResponse()
    response.say(NOT_AVAILABLE)
    response.hangup()
    return str(response)


# --------------------------------------------------------------------------- handling


def handle(
    kind: str, *, url: str, method: str, headers: Mapping[str, str], body: bytes | str
) -> Answer:
    """Serve one carrier webhook. `headers` with lower-case names."""
    if kind not in KINDS:
        return _empty(404)
    if method.upper() != "POST" and not (method.upper() == "GET" and kind in GET_KINDS):
        return _empty(405)
    from talkturo.carrier.base import CarrierNotConfigured
    from talkturo.carrier.factory import webhook_auth_token

    try:
        auth_token = webhook_auth_token()
    except CarrierNotConfigured:
        logger.error("carrier webhook refused: no carrier credentials configured")
        return _empty(503)
    # A GET's parameters are in its (signed) URL; it has no body to sign.
    params = parse_form(body) if method.upper() == "POST" else {}
    signature = headers.get("x-twilio-signature")
    unsigned_media = kind == "ringback.wav" and method.upper() == "GET" and signature is None
    if not unsigned_media and not is_signed(url, params, signature, auth_token):
        logger.warning("carrier webhook with a bad or missing signature", extra={"kind": kind})
        return _empty(403)
    query = dict(parse_qsl(urlsplit(url).query))
    if kind == "voice":
        return _voice(query, params)
    if kind == "ringback.wav":
        from talkturo.services import transfers

        return Answer(200, "audio/wav", transfers.ringback_wav())
    if kind == "wait":
        from talkturo.services import transfers

        return Answer(200, TWIML, transfers.wait_twiml())
    if kind == "transfer":
        return _transfer(query, params)
    if kind == "transfer-leg":
        return _transfer_leg(query, params)
    return _callback(kind, query, params)


def _named_call(query: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str] | None:
    from talkturo.services import calls

    if query.get("call") and query.get("account"):
        return query["account"], query["call"]
    sid = params.get("CallSid")
    return calls.find_by_carrier_sid(sid) if sid else None


def _voice(query: Mapping[str, str], params: Mapping[str, str]) -> Answer:
    from talkturo.errors import NotFound
    from talkturo.services import calls

    if query.get("call"):
        named = _named_call(query, params)
        if named is None:
            return Answer(200, TWIML, not_available_twiml())
        account_id, call_id = named
        try:
            record = calls.get_record(account_id, call_id)
        except NotFound:
            return Answer(200, TWIML, not_available_twiml())
        if record.status == "ended":
            return Answer(200, TWIML, not_available_twiml())
        return Answer(200, TWIML, stream_twiml(account_id, record))
    started = calls.start_inbound(
        to_number=params.get("To", ""),
        from_number=params.get("From", ""),
        carrier_sid=params.get("CallSid", ""),
    )
    if started is None or not params.get("CallSid"):
        return Answer(200, TWIML, not_available_twiml())
    account_id, record = started
    logger.info("inbound call answered", extra={"id": record.id})
    return Answer(200, TWIML, stream_twiml(account_id, record))


def _callback(kind: str, query: Mapping[str, str], params: Mapping[str, str]) -> Answer:
    from talkturo.services import calls

    named = _named_call(query, params)
    if named is None:
        # Not a call of ours (or not yet recorded): nothing to do; 200 so the carrier stops.
        return _empty(204)
    account_id, call_id = named
    event = event_of_twilio(
        params.get("CallStatus") if kind == "status" else None,
        at=utcnow(),
        duration=params.get("CallDuration"),
        answered_by=params.get("AnsweredBy"),
        carrier_sid=params.get("CallSid") or None,
    )
    calls.record_event(account_id, call_id, event)
    return _empty(204)


def _transfer(query: Mapping[str, str], params: Mapping[str, str]) -> Answer:
    """The transfer's <Dial> action: the TwiML the caller's call goes on with."""
    from talkturo.services import transfers

    if not (query.get("call") and query.get("account")):
        return Answer(200, TWIML, transfers.hangup_twiml())
    twiml = transfers.dial_ended(
        query["account"],
        query["call"],
        params.get("DialCallStatus", ""),
        mode="warm" if query.get("mode") == "warm" else "cold",
    )
    logger.info(
        "transfer dial ended",
        extra={"id": query["call"], "dial_status": params.get("DialCallStatus")},
    )
    return Answer(200, TWIML, twiml)


def _transfer_leg(query: Mapping[str, str], params: Mapping[str, str]) -> Answer:
    """The warm transfer's supervisor leg reports its progress."""
    from talkturo.services import transfers

    if query.get("call") and query.get("account") and params.get("CallSid"):
        transfers.leg_status(
            query["account"],
            query["call"],
            leg_sid=params["CallSid"],
            call_status=params.get("CallStatus", ""),
        )
    return _empty(204)
