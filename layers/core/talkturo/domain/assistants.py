"""Assistants: the five layers (prompt, language model, voice, transcriber, telephony), their tools,
prompt variables, and the rules a configuration meets before it is saved or priced.

Configurations arrive partial: a template plus overrides (create, estimate) or changes over the
stored assistant (PATCH). They are merged as JSON first (`deep_merge`: objects merge key by key,
lists and values replace), then validated whole by `validate_config`, which names the offending
param on error (`llm.model`, `tools[2].config.url`) and checks every provider, model, voice and
language against the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from talkturo.domain.analysis import AnalysisConfig
from talkturo.domain.assistant_tools import (
    REVEAL_SECRETS,
    TOOL_TYPES,
    WRITING,
    AssistantTool,
    AssistantToolView,
    OptOutConfig,
    TransferCallTool,
    carry_secrets,
    view_of,
)
from talkturo.domain.catalog import Catalog, EstimateBreakdown, estimate
from talkturo.domain.common import Credits, Name, Resource
from talkturo.errors import InvalidRequest

DEFAULT_AI_DISCLOSURE = "This call uses an AI assistant."
FirstMessageMode = Literal["assistant_speaks_first", "wait_for_caller"]
# A stored assistant must fit one DynamoDB item (400 KB) with room to spare.
MAX_CONFIG_BYTES = 300_000

# --------------------------------------------------------------------------- prompt variables

CONTACT_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "job_title",
    "timezone",
    "lead_status",
)
COMPANY_FIELDS = ("name", "website", "industry", "size", "phone", "address", "country")
CALL_FIELDS = ("direction", "from", "to", "date", "time")
KNOWN_VARIABLES = frozenset(
    [f"contact.{f}" for f in CONTACT_FIELDS]
    + [f"company.{f}" for f in COMPANY_FIELDS]
    + [f"call.{f}" for f in CALL_FIELDS]
    + ["campaign.name", "account.name"]
)
_CUSTOM = re.compile(r"^(contact|company)\.custom\.[a-z][a-z0-9_]{0,63}$")
_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
VARIABLES_HELP = (
    "contact." + "|".join(CONTACT_FIELDS) + ", contact.custom.<key>, "
    "company." + "|".join(COMPANY_FIELDS) + ", company.custom.<key>, "
    "campaign.name, account.name, call." + "|".join(CALL_FIELDS)
)


def prompt_variables(text: str) -> list[str]:
    """The variable names a text uses, in order (`{{ call.date }}` gives call.date)."""
    return [match.group(1) for match in _VARIABLE.finditer(text)]


def variable_problem(text: str, extra: Iterable[str] = ()) -> str | None:
    """What is wrong with a text's prompt variables, or None."""
    allowed = KNOWN_VARIABLES | frozenset(extra)
    for name in prompt_variables(text):
        if name not in allowed and not _CUSTOM.match(name):
            return f"unknown prompt variable {{{{{name}}}}}; known: {VARIABLES_HELP}" + (
                ", " + ", ".join(sorted(extra)) if extra else ""
            )
    if "{{" in _VARIABLE.sub("", text):
        return "a {{ has no matching }}; write prompt variables as {{contact.first_name}}"
    return None


# --------------------------------------------------------------------------- the layers

Keyterm = Annotated[str, Field(min_length=1, max_length=50)]


class LlmConfig(Resource):
    """The language model that writes what the assistant says."""

    provider: str = Field(description="openai, anthropic, google, deepseek, qwen or kimi.")
    model: str = Field(description="A model of the provider; see GET /v1/catalog.")
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=250, ge=16, le=4096, description="Per reply.")


class VoiceConfig(Resource):
    """Text to speech."""

    provider: str = Field(description="cartesia, elevenlabs, openai or dashscope.")
    model: str
    voice_id: str = Field(description="A voice of the provider that the model speaks with.")
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


class TranscriberConfig(Resource):
    """Speech to text."""

    provider: str = Field(description="deepgram, assemblyai, cartesia or elevenlabs.")
    model: str
    language: str = Field(description="One of the model's languages in the catalog.")
    keyterms: list[Keyterm] = Field(
        default_factory=list,
        max_length=50,
        description="Words to recognise reliably (names, products); models that support it.",
    )


class VoicemailConfig(Resource):
    detect: bool = Field(default=True, description="Detect answering machines on outbound calls.")
    action: Literal["hang_up", "leave_message"] = "hang_up"
    message: str | None = Field(
        default=None,
        max_length=1000,
        description="Left after the beep; required for leave_message; may use prompt variables.",
    )


class TelephonyConfig(Resource):
    inbound_enabled: bool = True
    outbound_enabled: bool = True
    call_region: str = Field(description="Where calls are carried: us, eu or ae (see catalog).")
    recording_enabled: bool = True
    voicemail: VoicemailConfig = Field(default_factory=VoicemailConfig)
    max_call_duration_seconds: int = Field(default=600, ge=30, le=3600)


class _AssistantBase(Resource):
    name: Name = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    system_prompt: str = Field(
        min_length=1,
        max_length=20_000,
        description="Who the assistant is and how it behaves; may use prompt variables.",
    )
    first_message: str = Field(
        default="",
        max_length=1000,
        description="Spoken when the call connects; may use prompt variables.",
    )
    first_message_mode: FirstMessageMode | None = Field(
        default=None,
        description="assistant_speaks_first or wait_for_caller; when not given, follows "
        "first_message (empty: wait_for_caller).",
    )
    llm: LlmConfig
    voice: VoiceConfig
    transcriber: TranscriberConfig
    telephony: TelephonyConfig
    success_criteria: str = Field(
        default="",
        max_length=2000,
        description="What a successful call achieves; post-call analysis judges against it.",
    )
    opt_out: OptOutConfig = Field(default_factory=OptOutConfig)
    analysis: AnalysisConfig = Field(
        default_factory=AnalysisConfig,
        description="What happens after each call: summary, success evaluation, structured "
        "data, disposition, and the CRM fields filled from what the caller said.",
    )
    ai_disclosure_message: str = Field(
        default=DEFAULT_AI_DISCLOSURE,
        min_length=1,
        max_length=300,
        description="Opens the first message of a campaign call that asks for AI disclosure "
        "(every campaign, by default); may use prompt variables.",
    )

    @model_validator(mode="after")
    def _mode(self) -> _AssistantBase:
        if self.first_message_mode is None:
            self.first_message_mode = (
                "assistant_speaks_first" if self.first_message else "wait_for_caller"
            )
        return self


class AssistantConfig(_AssistantBase):
    """A whole, validated configuration, secrets included (never answered as is)."""

    tools: list[AssistantTool] = Field(default_factory=list, max_length=20)


class AssistantRecord(AssistantConfig):
    """An assistant as stored. Its numbers and campaign count are maintained by other parts."""

    id: str
    created_at: datetime
    updated_at: datetime
    phone_number_ids: list[str] = Field(default_factory=list)
    active_campaign_count: int = 0


# --------------------------------------------------------------------------- answers


class AssistantSettings(_AssistantBase):
    """An assistant's configuration as answered: tools' secrets masked."""

    first_message_mode: FirstMessageMode
    tools: list[AssistantToolView]


class Assistant(AssistantSettings):
    object: Literal["assistant"] = "assistant"
    id: str
    phone_number_ids: list[str] = Field(
        description="Numbers answered by this assistant (read-only: assign through the phone "
        "number API)."
    )
    active_campaign_count: int = Field(description="Running campaigns using it (read-only).")
    estimated_credits_per_minute: Credits
    estimate_breakdown: EstimateBreakdown
    created_at: datetime
    updated_at: datetime


class AssistantEstimate(BaseModel):
    object: Literal["assistant_estimate"] = "assistant_estimate"
    estimated_credits_per_minute: Credits
    estimate_breakdown: EstimateBreakdown


class AssistantDeleted(BaseModel):
    object: Literal["assistant"] = "assistant"
    id: str
    deleted: Literal[True] = True


class AssistantClone(Resource):
    name: Name | None = Field(
        default=None, min_length=1, max_length=200, description='Default: "<name> (copy)".'
    )


class AssistantTemplate(BaseModel):
    object: Literal["assistant_template"] = "assistant_template"
    id: str
    name: str
    description: str
    assistant: AssistantSettings = Field(
        description="What POST /v1/assistants with this template (and no overrides) creates."
    )
    estimated_credits_per_minute: Credits
    estimate_breakdown: EstimateBreakdown


def _doc(schema: dict[str, Any]) -> Any:
    return WithJsonSchema(schema)


def _ref(name: str) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}


class AssistantWrite(BaseModel):
    """What POST /v1/assistants, PATCH /v1/assistants/{id} and the estimate accept.

    Every field is optional. Objects merge key by key over the template (create) or the stored
    assistant (PATCH), lists replace; the result is validated whole, so errors name the param
    (`tools[1].config.url`). The types below are documentation: validation happens after the merge.
    """

    model_config = ConfigDict(extra="allow")

    template: Annotated[Any, _doc({"type": "string"})] = Field(
        default=None,
        description="Create and estimate only: outbound-setter, inbound-support, follow-up or "
        "custom (default). See GET /v1/assistant-templates.",
    )
    name: Annotated[Any, _doc({"type": "string", "maxLength": 200})] = None
    description: Annotated[Any, _doc({"type": "string", "maxLength": 1000})] = None
    system_prompt: Annotated[Any, _doc({"type": "string", "maxLength": 20000})] = None
    first_message: Annotated[Any, _doc({"type": "string", "maxLength": 1000})] = None
    first_message_mode: Annotated[
        Any, _doc({"type": "string", "enum": ["assistant_speaks_first", "wait_for_caller"]})
    ] = None
    llm: Annotated[Any, _doc(_ref("LlmConfig"))] = None
    voice: Annotated[Any, _doc(_ref("VoiceConfig"))] = None
    transcriber: Annotated[Any, _doc(_ref("TranscriberConfig"))] = None
    telephony: Annotated[Any, _doc(_ref("TelephonyConfig"))] = None
    success_criteria: Annotated[Any, _doc({"type": "string", "maxLength": 2000})] = None
    opt_out: Annotated[Any, _doc(_ref("OptOutConfig"))] = Field(
        default=None,
        description="Phrases that mark the caller do-not-call, and the confirmation spoken.",
    )
    ai_disclosure_message: Annotated[Any, _doc({"type": "string", "maxLength": 300})] = None
    analysis: Annotated[Any, _doc(_ref("AnalysisConfig"))] = Field(
        default=None,
        description="The post-call analysis (docs/analysis.md); merges key by key, lists replace.",
    )
    tools: Annotated[
        Any,
        _doc(
            {
                "type": "array",
                "maxItems": 20,
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string", "enum": list(TOOL_TYPES)},
                        "enabled": {"type": "boolean", "default": True},
                        "config": {"type": "object"},
                    },
                },
            }
        ),
    ] = Field(
        default=None,
        description="Replaces the whole list. Secrets (scheduling api_key, webhook headers and "
        "secret) a PATCH leaves out are kept. See docs/assistants.md for each type's config.",
    )

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


# --------------------------------------------------------------------------- merging


READ_ONLY = frozenset(
    {
        "id",
        "object",
        "created_at",
        "updated_at",
        "phone_number_ids",
        "active_campaign_count",
        "estimated_credits_per_minute",
        "estimate_breakdown",
    }
)


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` over `base`: objects merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _refuse_read_only(changes: dict[str, Any]) -> None:
    for key in changes:
        if key in READ_ONLY:
            hint = (
                "; assign numbers through the phone number API" if key == "phone_number_ids" else ""
            )
            raise InvalidRequest(f"{key}: read-only{hint}", param=key)


def _follow_first_message(raw: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    # A new first message without an explicit mode re-derives the mode from it.
    if "first_message" in changes and "first_message_mode" not in changes:
        raw = {k: v for k, v in raw.items() if k != "first_message_mode"}
    return raw


def config_for_create(
    changes: dict[str, Any], *, catalog: Catalog, templates: dict[str, dict[str, Any]]
) -> AssistantConfig:
    """The configuration a create (or an estimate) asks for: defaults < template < changes."""
    changes = dict(changes)
    template_id = changes.pop("template", None)
    if template_id is None:
        template_id = "custom"
    if not isinstance(template_id, str) or template_id not in templates:
        raise InvalidRequest(
            f"template: unknown template {template_id!r}; one of: {', '.join(templates)}",
            param="template",
        )
    _refuse_read_only(changes)
    raw = deep_merge(deep_merge(catalog.default_layers(), templates[template_id]), changes)
    return validate_config(_follow_first_message(raw, changes), catalog)


def config_for_update(
    current: AssistantConfig, changes: dict[str, Any], *, catalog: Catalog
) -> AssistantConfig:
    """The stored configuration with a PATCH's changes applied, validated whole again."""
    if "template" in changes:
        raise InvalidRequest(
            "template: can only be chosen when creating an assistant", param="template"
        )
    _refuse_read_only(changes)
    stored = current.model_dump(
        mode="json", context=REVEAL_SECRETS, include=set(AssistantConfig.model_fields)
    )
    changes = dict(changes)
    if isinstance(changes.get("tools"), list):
        changes["tools"] = carry_secrets(changes["tools"], stored["tools"])
    raw = deep_merge(stored, changes)
    return validate_config(_follow_first_message(raw, changes), catalog)


# --------------------------------------------------------------------------- validation


def param_of(loc: Iterable[Any]) -> str:
    """A pydantic location as a param: ('tools', 2, 'config', 'url') → tools[2].config.url."""
    param = ""
    for part in loc:
        if isinstance(part, int):
            param += f"[{part}]"
        else:
            param += ("." if param else "") + str(part)
    return param


def _first_error(error: ValidationError) -> InvalidRequest:
    detail = error.errors()[0]
    loc = list(detail["loc"])
    # Tagged unions put the tag in the location (tools, 2, "webhook", config …): drop it.
    if len(loc) > 2 and loc[0] == "tools" and isinstance(loc[1], int):
        del loc[2]
    kind = detail["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("type")
        message = f"must be one of: {', '.join(TOOL_TYPES)}"
    elif kind == "extra_forbidden":
        message = "unknown field"
    else:
        message = str(detail["msg"]).removeprefix("Value error, ")
    param = param_of(loc) or None
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def validate_config(raw: dict[str, Any], catalog: Catalog) -> AssistantConfig:
    """A merged configuration checked whole: shapes, then rules across fields and the catalog."""
    try:
        config = AssistantConfig.model_validate(raw, context=WRITING)
    except ValidationError as error:
        raise _first_error(error) from None
    for param, message in _issues(config, catalog):
        raise _fail(param, message)
    size = len(config.model_dump_json(context=REVEAL_SECRETS).encode())
    if size > MAX_CONFIG_BYTES:
        raise InvalidRequest(
            f"the assistant is too large ({size} bytes of JSON, at most {MAX_CONFIG_BYTES}): "
            "shorten its prompt or its tools"
        )
    return config


def _issues(config: AssistantConfig, catalog: Catalog) -> Iterator[tuple[str, str]]:
    if config.first_message_mode == "assistant_speaks_first" and not config.first_message:
        yield (
            "first_message",
            "required when first_message_mode is assistant_speaks_first "
            "(or set first_message_mode to wait_for_caller)",
        )
    texts: list[tuple[str, str | None, tuple[str, ...]]] = [
        ("system_prompt", config.system_prompt, ()),
        ("first_message", config.first_message, ()),
        ("telephony.voicemail.message", config.telephony.voicemail.message, ()),
        ("opt_out.confirmation", config.opt_out.confirmation, ()),
        ("ai_disclosure_message", config.ai_disclosure_message, ()),
    ]
    for index, tool in enumerate(config.tools):
        if tool.type == "end_call":
            texts.append(
                (f"tools[{index}].config.closing_message", tool.config.closing_message, ())
            )
        if isinstance(tool, TransferCallTool):
            texts.append(
                (f"tools[{index}].config.warm_intro", tool.config.warm_intro, ("summary",))
            )
    for param, text, extra in texts:
        problem = variable_problem(text or "", extra)
        if problem:
            yield param, problem
    voicemail = config.telephony.voicemail
    if voicemail.action == "leave_message" and not voicemail.message:
        yield "telephony.voicemail.message", "required when the action is leave_message"
    yield from _catalog_issues(config, catalog)
    yield from _tool_issues(config)


def _one_of(values: Iterable[str]) -> str:
    return "one of: " + ", ".join(values)


def _catalog_issues(config: AssistantConfig, catalog: Catalog) -> Iterator[tuple[str, str]]:
    if catalog.region(config.telephony.call_region) is None:
        yield (
            "telephony.call_region",
            f"unknown region {config.telephony.call_region!r}; "
            + _one_of(r.id for r in catalog.telephony),
        )
    layers: list[tuple[Literal["llm", "voice", "transcriber"], str, str]] = [
        ("llm", config.llm.provider, config.llm.model),
        ("voice", config.voice.provider, config.voice.model),
        ("transcriber", config.transcriber.provider, config.transcriber.model),
    ]
    for layer, provider_id, model_id in layers:
        provider = catalog.provider(layer, provider_id)
        if provider is None:
            yield (
                f"{layer}.provider",
                f"unknown provider {provider_id!r}; "
                + _one_of(p.id for p in catalog.providers(layer)),
            )
            continue
        model = provider.model(model_id)
        if model is None:
            yield (
                f"{layer}.model",
                f"{model_id!r} is not a model of {provider_id}; "
                + _one_of(m.id for m in provider.models),
            )
            continue
        if layer == "voice":
            voices = provider.voices_for(model_id)
            if config.voice.voice_id not in {v.id for v in voices}:
                yield (
                    "voice.voice_id",
                    f"{config.voice.voice_id!r} is not a voice of {provider_id} {model_id}; "
                    + _one_of(v.id for v in voices),
                )
        if layer == "transcriber":
            if config.transcriber.language not in model.languages:
                yield (
                    "transcriber.language",
                    f"{config.transcriber.language!r} is not supported by {provider_id} "
                    f"{model_id}; " + _one_of(model.languages),
                )
            if config.transcriber.keyterms and not model.keyterms:
                supported = [
                    f"{p.id}/{m.id}" for p in catalog.transcriber for m in p.models if m.keyterms
                ]
                yield (
                    "transcriber.keyterms",
                    f"{provider_id} {model_id} does not support keyterms; remove them or use "
                    + _one_of(supported),
                )


def _tool_issues(config: AssistantConfig) -> Iterator[tuple[str, str]]:
    seen_types: set[str] = set()
    webhook_names: set[str] = set()
    for index, tool in enumerate(config.tools):
        if tool.type != "webhook":
            if tool.type in seen_types:
                yield f"tools[{index}].type", f"only one {tool.type} tool is allowed"
            seen_types.add(tool.type)
        else:
            name = tool.config.name
            if name in webhook_names:
                yield f"tools[{index}].config.name", f"another webhook is already named {name}"
            webhook_names.add(name)
        for param, message in tool.config.issues():
            yield f"tools[{index}].config.{param}", message


# --------------------------------------------------------------------------- answers


def estimate_of(config: AssistantConfig, catalog: Catalog) -> EstimateBreakdown:
    return estimate(
        catalog,
        call_region=config.telephony.call_region,
        llm=(config.llm.provider, config.llm.model),
        voice=(config.voice.provider, config.voice.model),
        transcriber=(config.transcriber.provider, config.transcriber.model),
    )


def settings_of(config: AssistantConfig) -> dict[str, Any]:
    """The fields of AssistantSettings: the configuration with its tools masked."""
    fields = {name: getattr(config, name) for name in _AssistantBase.model_fields}
    return {**fields, "tools": [view_of(tool) for tool in config.tools]}


def present(record: AssistantRecord, catalog: Catalog) -> Assistant:
    breakdown = estimate_of(record, catalog)
    return Assistant(
        **settings_of(record),
        id=record.id,
        phone_number_ids=sorted(record.phone_number_ids),
        active_campaign_count=record.active_campaign_count,
        estimated_credits_per_minute=breakdown.total,
        estimate_breakdown=breakdown,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
