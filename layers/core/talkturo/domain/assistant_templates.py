"""Assistant templates (data/templates.yaml): partial configurations a new assistant starts from.

Read once per process, on first use. Whether each template makes a valid assistant is checked by
the test suite (and by every create that uses it), not at load time, so loading stays cheap.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TEMPLATE = "custom"


class TemplateSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,63}$")
    name: str
    description: str
    assistant: dict[str, Any]


def load_templates(text: str) -> dict[str, TemplateSource]:
    data = yaml.safe_load(text)
    templates = [TemplateSource.model_validate(t) for t in data["templates"]]
    by_id = {t.id: t for t in templates}
    if len(by_id) != len(templates):
        raise ValueError("template ids must be unique")
    if DEFAULT_TEMPLATE not in by_id:
        raise ValueError(f"the {DEFAULT_TEMPLATE} template is missing")
    return by_id


@lru_cache(maxsize=1)
def get_templates() -> dict[str, TemplateSource]:
    """The packaged templates by id, in file order."""
    return load_templates(files("talkturo").joinpath("data/templates.yaml").read_text("utf-8"))
