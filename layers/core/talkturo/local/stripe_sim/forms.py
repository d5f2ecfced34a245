"""Stripe's form encoding, read back: `a[b][0][c]=v` pairs into nested dicts and lists.

The SDK sends every POST as application/x-www-form-urlencoded and every GET's parameters in
the query string, with brackets for nesting and indexes for lists (`line_items[0][quantity]`)
and booleans as `true`/`false`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_PART = re.compile(r"\[([^\[\]]*)\]")


def _path(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    return [head, *_PART.findall("[" + rest)] if rest else [head]


def decode(text: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = _path(key)
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):
                position = int(part) if part.isdigit() else len(node)
                while len(node) <= position:
                    node.append(None)
                if last:
                    node[position] = value
                else:
                    if node[position] is None:
                        node[position] = [] if parts[index + 1].isdigit() else {}
                    node = node[position]
            else:
                if last:
                    node[part] = value
                else:
                    if part not in node:
                        following = parts[index + 1]
                        node[part] = [] if following.isdigit() or following == "" else {}
                    node = node[part]
    return root


def boolean(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes", "on")


def integer(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"Invalid integer: {value}", name) from None
