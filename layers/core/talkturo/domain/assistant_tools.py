"""The tools an assistant can use during a call: `{type, enabled, config}`, one model per type.

Each config validates its own fields here (E.164 numbers, public https URLs, JSON Schema
parameters). Rules that span fields are reported by `issues()` as `(param, message)` pairs
relative to the config, so the caller can name the full path (`tools[2].config.event_type`).

Secrets (a scheduling API key, webhook header values and signing secret) are write-only: they are
kept as `SecretStr`, serialized in clear only for storage (context `{"reveal_secrets": True}`),
and answered masked through the `*View` models.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    ValidationInfo,
    field_validator,
)

from talkturo.domain.common import Name, Resource

ToolType = Literal["end_call", "transfer_call", "info_extraction", "scheduling", "webhook"]
TOOL_TYPES: tuple[str, ...] = (
    "end_call",
    "transfer_call",
    "info_extraction",
    "scheduling",
    "webhook",
)
# Function names the platform itself gives the model during a call; webhooks cannot take them.
RESERVED_FUNCTION_NAMES = frozenset(
    {
        *TOOL_TYPES,
        "opt_out",
        "check_availability",
        "book_meeting",
        "book_appointment",
        "extract_info",
    }
)

REVEAL_SECRETS = {"reveal_secrets": True}
# Validation context of a configuration being written. The checks that are costly or depend on
# data that changes between releases (phone number metadata, URL and JSON Schema rules) run only
# then: a stored assistant read back, or an answer re-validated, is never refused by them.
WRITING = {"writing": True}

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
MAX_PARAMETERS_BYTES = 16_000


def _writing(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("writing"))


def mask(secret: str) -> str:
    """How a secret is shown: its last four characters at most, and only when it is long."""
    return "****" + secret[-4:] if len(secret) >= 12 else "****"


def _dump_secret(value: SecretStr, info: SerializationInfo) -> str:
    if info.context and info.context.get("reveal_secrets"):
        return value.get_secret_value()
    return mask(value.get_secret_value())


Secret = Annotated[SecretStr, PlainSerializer(_dump_secret, return_type=str)]


# --------------------------------------------------------------------------- field checks


def e164(value: str) -> str:
    """A phone number in E.164 (`+14155550123`), checked with libphonenumber.

    An extension (`ext9`, `x9`, `;ext=9`, `#9`) is kept, written `;ext=9` (RFC 3966): the
    dialing rules dial it as DTMF after the answer, or refuse it."""
    import phonenumbers

    hint = "must be a phone number in E.164 format, such as +14155550123"
    if not value.startswith("+"):
        raise ValueError(hint)
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(hint) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value} is not a valid phone number")
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return number + (f";ext={parsed.extension}" if parsed.extension else "")


def public_https_url(value: str) -> str:
    """An https URL whose host is a public name or a public IP literal.

    This is the configuration-time check only: the voice service checks the resolved addresses
    again when it calls the URL (DNS can point a public name at a private address).
    """
    if len(value) > 2048:
        raise ValueError("must be at most 2048 characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise ValueError("must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; put them in headers")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("must name a host")
    _check_public_host(host)
    return value


def _check_public_host(host: str) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise ValueError(
                "must not point at a private, loopback, link-local or reserved address"
            )
        return
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise ValueError("must not point at a local host name")
    labels = host.split(".")
    # A real top-level domain also rules out numeric host spellings ("2130706433", "127.1",
    # "0x7f.1") that some resolvers turn into private addresses.
    if len(labels) < 2 or not re.fullmatch(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}", labels[-1]):
        raise ValueError("must be a public host name (with a top-level domain) or a public IP")


def function_parameters(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (Draft 2020-12) of type object: the arguments the model fills in."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if value.get("type") != "object":
        raise ValueError('must be a JSON Schema with "type": "object"')
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise ValueError("must be plain JSON") from None
    if size > MAX_PARAMETERS_BYTES:
        raise ValueError(f"must be at most {MAX_PARAMETERS_BYTES} bytes of JSON")
    remote = _remote_reference(value)
    if remote is not None:
        raise ValueError(
            f"may only reference its own definitions (a $ref starting with #), not {remote!r}"
        )
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.path)
        raise ValueError(
            f"is not a valid JSON Schema (Draft 2020-12){' at ' + where if where else ''}: "
            f"{error.message}"
        ) from None
    return value


def _remote_reference(schema: Any) -> str | None:
    """The first reference that leaves the schema (a URL or a file), if any: nothing may ever
    fetch one when arguments are checked against it."""
    if isinstance(schema, dict):
        for key, item in schema.items():
            if key in ("$ref", "$dynamicRef") and not (isinstance(item, str) and item[:1] == "#"):
                return str(item)
            found = _remote_reference(item)
            if found is not None:
                return found
    elif isinstance(schema, list):
        for item in schema:
            found = _remote_reference(item)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- configs

Phrase = Annotated[str, Field(min_length=1, max_length=100)]


class EndCallConfig(Resource):
    """Hang up when the caller says one of the phrases, or when the model decides it is over."""

    phrases: list[Phrase] = Field(
        default_factory=list,
        max_length=20,
        description='Phrases that end the call at once when the caller says them ("bye").',
    )
    closing_message: str | None = Field(
        default=None,
        max_length=500,
        description="Spoken before hanging up; may use prompt variables.",
    )

    def issues(self) -> Iterator[tuple[str, str]]:
        return iter(())


DEFAULT_OPT_OUT_PHRASES = (
    "stop calling me",
    "stop calling",
    "do not call me",
    "don't call me",
    "never call me",
    "take me off your list",
    "take me off the list",
    "take me off your calling list",
    "remove me from your list",
    "remove me from the list",
    "remove my number",
    "put me on your do not call list",
    "add me to your do not call list",
    "i don't want any more calls",
    "i do not want any more calls",
)
DEFAULT_OPT_OUT_CONFIRMATION = "Understood. You won't be called again. Goodbye."


class OptOutConfig(Resource):
    """A caller asking not to be called again: always honoured, by the `opt_out` function the
    model is always offered and by these phrases, matched in what the caller says."""

    phrases: list[Phrase] = Field(
        default_factory=lambda: list(DEFAULT_OPT_OUT_PHRASES),
        max_length=50,
        description="Said by the caller (ignoring case and punctuation, as whole words), they "
        "mark the contact do-not-call at once, without asking the model. Write them in the "
        "call's language; [] leaves it to the model's opt_out function.",
    )
    confirmation: str = Field(
        default=DEFAULT_OPT_OUT_CONFIRMATION,
        min_length=1,
        max_length=500,
        description="Spoken once the contact is marked, before the call ends; may use prompt "
        "variables.",
    )


def _words(text: str) -> str:
    """Words only, case-folded, space-separated: "Stop calling me!" and "stop calling me" say
    the same; an apostrophe joins its word ("don't" → "dont")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = re.sub(r"['\u2019\u02bc]", "", folded)
    return " ".join(re.sub(r"\W+", " ", folded).split())


def phrase_said(text: str, phrases: Iterable[str]) -> str | None:
    """The first of `phrases` the caller said in `text` (as whole words), if any."""
    said = f" {_words(text)} "
    for phrase in phrases:
        words = _words(phrase)
        if words and f" {words} " in said:
            return phrase
    return None


class TransferDestination(Resource):
    name: Name = Field(min_length=1, max_length=100, description="Who answers, e.g. Sales desk.")
    number: str = Field(
        description="E.164 phone number, e.g. +14155550123; an extension is kept as "
        "+14155550123;ext=9 and dialled as DTMF after the answer."
    )
    description: str | None = Field(
        default=None,
        max_length=500,
        description="When to transfer here; the model reads it to choose a destination.",
    )

    @field_validator("number")
    @classmethod
    def _number(cls, value: str, info: ValidationInfo) -> str:
        return e164(value) if _writing(info) else value


class TransferCallConfig(Resource):
    """Hand the caller to a person: cold (forward and leave) or warm (brief them first)."""

    mode: Literal["cold", "warm"] = "cold"
    destinations: list[TransferDestination] = Field(min_length=1, max_length=10)
    warm_intro: str | None = Field(
        default=None,
        max_length=1000,
        description="Warm mode: what the supervisor hears before the bridge; may use prompt "
        "variables and {{summary}} (a summary of the call so far, written by the model).",
    )
    ring_tone: bool = Field(default=True, description="Play a ringing tone during the handoff.")

    def issues(self) -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        for index, destination in enumerate(self.destinations):
            if destination.name.lower() in seen:
                yield f"destinations[{index}].name", "destination names must be unique"
            seen.add(destination.name.lower())


class ExtractionField(Resource):
    key: str = Field(description="The contact's (or company's) field key, e.g. budget.")
    description: str = Field(min_length=1, max_length=500, description="What to look for.")
    type: Literal["text", "number", "date", "boolean", "select"] = "text"
    options: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=50, description="The allowed values; select fields only."
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not FIELD_KEY.match(value):
            raise ValueError(
                "must start with a lowercase letter and use only a-z, 0-9 and _ (64 at most)"
            )
        return value


class InfoExtractionConfig(Resource):
    """After the call, fill these fields of the contact (or company) from the transcript."""

    target: Literal["contact", "company"] = "contact"
    fields: list[ExtractionField] = Field(min_length=1, max_length=50)
    allow_create_fields: bool = Field(
        default=False, description="Create custom fields that do not exist yet."
    )

    def issues(self) -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        for index, item in enumerate(self.fields):
            if item.key in seen:
                yield f"fields[{index}].key", f"{item.key} appears twice"
            seen.add(item.key)
            if item.type == "select" and not item.options:
                yield f"fields[{index}].options", "a select field needs at least one option"
            if item.type != "select" and item.options is not None:
                yield f"fields[{index}].options", "only select fields take options"


class SchedulingConfig(Resource):
    """Check availability and book meetings live, with Calendly or Cal.com."""

    provider: Literal["calendly", "calcom"]
    api_key: Secret = Field(
        description="Calendly personal access token or Cal.com API key. Write-only."
    )
    event_type: str = Field(
        max_length=500,
        description="Cal.com event type id (e.g. 123456) or Calendly event type URI "
        "(https://api.calendly.com/event_types/…).",
    )
    timezone: str | None = Field(
        default=None, description="IANA zone for times spoken to the caller; default: contact's."
    )

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        if not 8 <= len(value.get_secret_value()) <= 2048:
            raise ValueError("must be 8 to 2048 characters")
        return value

    @field_validator("event_type", mode="before")
    @classmethod
    def _event_type(cls, value: Any) -> Any:
        # Cal.com ids are numbers; keep them as text like Calendly's URIs.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        from talkturo.domain.accounts import is_timezone

        if value is not None and not is_timezone(value):
            raise ValueError("must be an IANA time zone name such as Europe/Berlin")
        return value

    def issues(self) -> Iterator[tuple[str, str]]:
        if self.provider == "calcom" and not re.fullmatch(r"[1-9][0-9]{0,18}", self.event_type):
            yield "event_type", "for Cal.com, use the numeric event type id"
        if self.provider == "calendly" and not re.fullmatch(
            r"https://api\.calendly\.com/event_types/[A-Za-z0-9-]+", self.event_type
        ):
            yield (
                "event_type",
                "for Calendly, use the event type URI: https://api.calendly.com/event_types/<id>",
            )


class WebhookConfig(Resource):
    """A function the model may call mid-conversation; it speaks from the response."""

    name: str = Field(description="Function name the model sees, e.g. lookup_order.")
    description: str = Field(
        min_length=1, max_length=1000, description="When and why the model should call it."
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (Draft 2020-12) of the arguments; must be of type object.",
    )
    url: str = Field(description="https only; private and local addresses are refused.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, Secret] = Field(
        default_factory=dict, description="Sent with every call. Values are write-only."
    )
    secret: Secret | None = Field(
        default=None, description="Signs each request (HMAC-SHA256). Write-only."
    )
    timeout_seconds: int = Field(default=10, ge=1, le=20)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(
                "must be a function name: a letter or _, then letters, digits or _ (64 at most)"
            )
        if value in RESERVED_FUNCTION_NAMES:
            raise ValueError(f"{value} is reserved for a built-in tool")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return function_parameters(value) if _writing(info) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        return public_https_url(value) if _writing(info) else value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        if len(value) > 20:
            raise ValueError("at most 20 headers")
        seen: set[str] = set()
        for name, secret in value.items():
            if not HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"{name} is set by the platform and cannot be configured")
            if name.lower() in seen:
                raise ValueError(f"{name} appears twice")
            seen.add(name.lower())
            text = secret.get_secret_value()
            if len(text) > 4096 or any(c in text for c in "\r\n\0"):
                raise ValueError(f"the value of {name} must be one line of at most 4096 characters")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 16 <= len(value.get_secret_value()) <= 256:
            raise ValueError("must be 16 to 256 characters")
        return value

    def issues(self) -> Iterator[tuple[str, str]]:
        return iter(())


# --------------------------------------------------------------------------- tools


class EndCallTool(Resource):
    type: Literal["end_call"]
    enabled: bool = True
    config: EndCallConfig = Field(default_factory=EndCallConfig)


class TransferCallTool(Resource):
    type: Literal["transfer_call"]
    enabled: bool = True
    config: TransferCallConfig


class InfoExtractionTool(Resource):
    type: Literal["info_extraction"]
    enabled: bool = True
    config: InfoExtractionConfig


class SchedulingTool(Resource):
    type: Literal["scheduling"]
    enabled: bool = True
    config: SchedulingConfig


class WebhookTool(Resource):
    type: Literal["webhook"]
    enabled: bool = True
    config: WebhookConfig


AssistantTool = Annotated[
    EndCallTool | TransferCallTool | InfoExtractionTool | SchedulingTool | WebhookTool,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- answers


class SchedulingConfigView(BaseModel):
    provider: Literal["calendly", "calcom"]
    api_key_set: bool = Field(description="The key itself is never returned.")
    api_key_last4: str
    event_type: str
    timezone: str | None = None


class WebhookConfigView(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    headers: dict[str, str] = Field(
        description="Values masked. Send a masked value back unchanged to keep the header."
    )
    secret_set: bool
    timeout_seconds: int


class SchedulingToolView(BaseModel):
    type: Literal["scheduling"]
    enabled: bool
    config: SchedulingConfigView


class WebhookToolView(BaseModel):
    type: Literal["webhook"]
    enabled: bool
    config: WebhookConfigView


AssistantToolView = Annotated[
    EndCallTool | TransferCallTool | InfoExtractionTool | SchedulingToolView | WebhookToolView,
    Field(discriminator="type"),
]


def view_of(
    tool: EndCallTool | TransferCallTool | InfoExtractionTool | SchedulingTool | WebhookTool,
) -> EndCallTool | TransferCallTool | InfoExtractionTool | SchedulingToolView | WebhookToolView:
    """The tool as answered to the API: secrets replaced by whether they are set."""
    if isinstance(tool, SchedulingTool):
        key = tool.config.api_key.get_secret_value()
        return SchedulingToolView(
            type="scheduling",
            enabled=tool.enabled,
            config=SchedulingConfigView(
                provider=tool.config.provider,
                api_key_set=True,
                api_key_last4=key[-4:],
                event_type=tool.config.event_type,
                timezone=tool.config.timezone,
            ),
        )
    if isinstance(tool, WebhookTool):
        config = tool.config
        return WebhookToolView(
            type="webhook",
            enabled=tool.enabled,
            config=WebhookConfigView(
                name=config.name,
                description=config.description,
                parameters=config.parameters,
                url=config.url,
                method=config.method,
                headers={k: mask(v.get_secret_value()) for k, v in config.headers.items()},
                secret_set=config.secret is not None,
                timeout_seconds=config.timeout_seconds,
            ),
        )
    return tool


def carry_secrets(new_tools: list[Any], old_tools: list[dict[str, Any]]) -> list[Any]:
    """Keep stored secrets a PATCH does not restate (it cannot: answers never show them).

    `old_tools` is the stored list in clear. A scheduling tool without `api_key` keeps the stored
    key; a webhook (matched by name) without `headers` or `secret` keeps the stored ones, and a
    header whose value is the masked form of the stored value keeps the stored value. An explicit
    `"secret": null` removes the signing secret.
    """
    previous_scheduling = next((t for t in old_tools if t.get("type") == "scheduling"), None)
    previous_webhooks = {
        t["config"]["name"]: t["config"] for t in old_tools if t.get("type") == "webhook"
    }
    carried: list[Any] = []
    for tool in new_tools:
        config = tool.get("config") if isinstance(tool, dict) else None
        if not isinstance(config, dict):
            carried.append(tool)
            continue
        config = dict(config)
        if tool.get("type") == "scheduling" and previous_scheduling is not None:
            if "api_key" not in config:
                config["api_key"] = previous_scheduling["config"]["api_key"]
        elif tool.get("type") == "webhook" and config.get("name") in previous_webhooks:
            before = previous_webhooks[config["name"]]
            if "secret" not in config and before.get("secret") is not None:
                config["secret"] = before["secret"]
            if "headers" not in config:
                config["headers"] = before.get("headers", {})
            elif isinstance(config["headers"], dict):
                stored = before.get("headers", {})
                config["headers"] = {
                    name: stored[name]
                    if name in stored and isinstance(value, str) and value == mask(stored[name])
                    else value
                    for name, value in config["headers"].items()
                }
        carried.append({**tool, "config": config})
    return carried
