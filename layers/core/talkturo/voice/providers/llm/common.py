"""What the language-model adapters share: timeouts, the opening user turn some APIs need, how
an HTTP status and a streamed tool call's arguments are read."""

from __future__ import annotations

import json
import uuid
from typing import Any

# The first token of a spoken reply must come fast; a stalled stream is a failed turn the
# call loop retries once, so the SDKs' own retries (with back-off) stay off.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0
# Stands in for the caller's side when the assistant spoke first (for APIs whose history must
# open with a user turn).
CALL_CONNECTED = "(The call has connected.)"


def retryable_status(status: int) -> bool:
    """Whether trying again may help after this HTTP status (timeouts, conflicts, rate limits,
    server faults)."""
    return status in (408, 409, 429) or status >= 500


def new_call_id() -> str:
    """An id for a tool call the provider left without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool-call arguments as the model wrote them: a JSON object, else {} plus `_raw`."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


# --------------------------------------------------------------------------- structured output

# A post-call answer is longer than a spoken turn and nobody waits on the line for it.
STRUCTURED_TIMEOUT_S = 90.0

# What each provider's constrained decoding accepts of JSON Schema (from their documentation);
# anything else is dropped from what is sent and still checked locally against the original.
OPENAI_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "description", "title", "$defs", "$ref", "pattern", "format", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    }
)  # fmt: skip
OPENAI_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
ANTHROPIC_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "allOf", "description", "title", "$defs", "definitions", "$ref", "format",
        "minItems",
    }
)  # fmt: skip
ANTHROPIC_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
GEMINI_KEYWORDS = frozenset(
    {
        "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum",
        "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf",
        "properties", "additionalProperties", "required",
    }
)  # fmt: skip
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def _subschemas(schema: dict[str, Any], convert: Any) -> dict[str, Any]:
    """`schema` with `convert` applied to every schema nested in it."""
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: convert(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [convert(sub) for sub in out[key]]
    if isinstance(out.get("items"), dict):
        out["items"] = convert(out["items"])
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"] if kind != "null" else "null"
    elif isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    elif "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    else:
        return {"anyOf": [out, {"type": "null"}]}
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def is_object_schema(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def openai_strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """`schema` in the form OpenAI's strict mode requires: every object lists all its keys
    as required (a key that was optional may be null instead), `additionalProperties: false`,
    only the keywords strict mode supports. None when the schema has an object whose keys are
    not fixed (strict mode cannot express it)."""
    free = False

    def convert(node: Any) -> Any:
        nonlocal free
        if not isinstance(node, dict):
            return node
        node = dict(node)
        if "oneOf" in node and "anyOf" not in node:
            node["anyOf"] = node.pop("oneOf")
        if node.get("format") not in OPENAI_FORMATS:
            node.pop("format", None)
        out = _subschemas({k: v for k, v in node.items() if k in OPENAI_STRICT_KEYWORDS}, convert)
        if is_object_schema(out):
            properties = out.get("properties") or {}
            if not properties or node.get("additionalProperties") not in (None, False):
                free = True
            required = set(node.get("required") or [])
            out["properties"] = {
                name: sub if name in required else _nullable(sub)
                for name, sub in properties.items()
            }
            out["required"] = list(properties)
            out["additionalProperties"] = False
        return out

    converted = convert(schema)
    return None if free else converted


def anthropic_strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` as a strict tool's input schema: `additionalProperties: false` on every object,
    only supported keywords (no numeric or length bounds; minItems 0 or 1)."""

    def convert(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = dict(node)
        if "oneOf" in node and "anyOf" not in node:
            node["anyOf"] = node.pop("oneOf")
        if node.get("format") not in ANTHROPIC_FORMATS:
            node.pop("format", None)
        if node.get("minItems") not in (0, 1):
            node.pop("minItems", None)
        out = _subschemas(
            {k: v for k, v in node.items() if k in ANTHROPIC_STRICT_KEYWORDS}, convert
        )
        if is_object_schema(out):
            out.setdefault("properties", {})
            out["additionalProperties"] = False
        return out

    result: dict[str, Any] = convert(schema)
    return result


def gemini_response_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the keywords Gemini's `responseJsonSchema` supports (`const` as a
    one-value `enum`)."""

    def convert(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = dict(node)
        if "const" in node and "enum" not in node:
            node["enum"] = [node.pop("const")]
        return _subschemas({k: v for k, v in node.items() if k in GEMINI_KEYWORDS}, convert)

    result: dict[str, Any] = convert(schema)
    return result


def parse_json_answer(text: str) -> Any:
    """The JSON value an answer holds, or None: the text itself, or the one object inside a
    Markdown code fence or surrounding prose (JSON mode still sometimes adds them)."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(stripped[start : end + 1])
        except ValueError:
            return None
    return None
