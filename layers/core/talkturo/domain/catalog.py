"""The provider catalog and rate table (data/catalog.yaml): what an assistant may choose, and the
price per minute of each choice.

The catalog is data, not code: it is read from the package's YAML once per process, on first use,
and checked as it loads (unique ids, defaults that exist, rates with at most four decimals), so a
bad edit fails the test suite instead of a request.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from importlib.resources import files
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from talkturo.domain.common import Credits, quantize_credits

Layer = Literal["llm", "voice", "transcriber"]
LAYERS: tuple[Layer, ...] = ("llm", "voice", "transcriber")


def _rate(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("a rate cannot be negative")
    if value != quantize_credits(value):
        raise ValueError("rates have at most four decimal places")
    return quantize_credits(value)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogVoice(_Entry):
    id: str = Field(min_length=1, description="The value of `voice.voice_id`.")
    name: str
    gender: Literal["female", "male", "neutral"] | None = None
    language: str | None = Field(default=None, description="The language the voice was made for.")
    models: list[str] | None = Field(
        default=None,
        description="The only models that speak with this voice; absent: every model of the "
        "provider.",
    )


class CatalogModel(_Entry):
    id: str = Field(min_length=1)
    name: str
    credits_per_minute: Credits
    languages: list[str] = Field(
        default_factory=list, description="Transcriber models: the accepted `language` values."
    )
    keyterms: bool = Field(
        default=False, description="Transcriber models: whether `keyterms` are supported."
    )

    @field_validator("credits_per_minute")
    @classmethod
    def _rate(cls, value: Decimal) -> Decimal:
        return _rate(value)


class CatalogProvider(_Entry):
    id: str = Field(min_length=1)
    name: str
    models: list[CatalogModel] = Field(min_length=1)
    voices: list[CatalogVoice] = Field(default_factory=list)

    def model(self, model_id: str) -> CatalogModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def voices_for(self, model_id: str) -> list[CatalogVoice]:
        return [v for v in self.voices if v.models is None or model_id in v.models]

    @model_validator(mode="after")
    def _consistent(self) -> CatalogProvider:
        _unique(f"{self.id} models", [m.id for m in self.models])
        _unique(f"{self.id} voices", [v.id for v in self.voices])
        known = {m.id for m in self.models}
        for voice in self.voices:
            for model in voice.models or []:
                if model not in known:
                    raise ValueError(f"voice {voice.id} names unknown model {model}")
        return self


class TelephonyRegion(_Entry):
    id: str = Field(min_length=1, description="The value of `telephony.call_region`.")
    name: str
    countries: list[str] = Field(description="Phone number countries (ISO 3166) in the region.")
    credits_per_minute: Credits

    @field_validator("credits_per_minute")
    @classmethod
    def _rate(cls, value: Decimal) -> Decimal:
        return _rate(value)


class LlmChoice(_Entry):
    provider: str
    model: str


class VoiceChoice(_Entry):
    provider: str
    model: str
    voice_id: str


class TranscriberChoice(_Entry):
    provider: str
    model: str
    language: str


class CatalogDefaults(_Entry):
    """What an assistant uses for whatever its template and request leave unset."""

    call_region: str
    llm: LlmChoice
    voice: VoiceChoice
    transcriber: TranscriberChoice


class Catalog(_Entry):
    object: Literal["catalog"] = "catalog"
    platform_fee: Credits = Field(description="Credits per minute on every call.")
    telephony: list[TelephonyRegion] = Field(min_length=1)
    defaults: CatalogDefaults
    llm: list[CatalogProvider] = Field(min_length=1)
    voice: list[CatalogProvider] = Field(min_length=1)
    transcriber: list[CatalogProvider] = Field(min_length=1)

    @field_validator("platform_fee")
    @classmethod
    def _rate(cls, value: Decimal) -> Decimal:
        return _rate(value)

    def providers(self, layer: Layer) -> list[CatalogProvider]:
        found: list[CatalogProvider] = getattr(self, layer)
        return found

    def provider(self, layer: Layer, provider_id: str) -> CatalogProvider | None:
        return next((p for p in self.providers(layer) if p.id == provider_id), None)

    def region(self, region_id: str) -> TelephonyRegion | None:
        return next((r for r in self.telephony if r.id == region_id), None)

    def rate(self, layer: Layer, provider_id: str, model_id: str) -> Decimal | None:
        provider = self.provider(layer, provider_id)
        model = provider.model(model_id) if provider else None
        return model.credits_per_minute if model else None

    def highest_rate(self, layer: Layer) -> Decimal:
        return max(m.credits_per_minute for p in self.providers(layer) for m in p.models)

    def default_layers(self) -> dict[str, Any]:
        """The defaults in the shape of an assistant configuration (the base of every merge)."""
        return {
            "llm": self.defaults.llm.model_dump(),
            "voice": self.defaults.voice.model_dump(),
            "transcriber": self.defaults.transcriber.model_dump(),
            "telephony": {"call_region": self.defaults.call_region},
        }

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        _unique("telephony regions", [r.id for r in self.telephony])
        for layer in LAYERS:
            _unique(f"{layer} providers", [p.id for p in self.providers(layer)])
        d = self.defaults
        if self.region(d.call_region) is None:
            raise ValueError(f"the default call_region {d.call_region} is not a region")
        choices: list[tuple[Layer, LlmChoice | VoiceChoice | TranscriberChoice]] = [
            ("llm", d.llm),
            ("voice", d.voice),
            ("transcriber", d.transcriber),
        ]
        for layer, choice in choices:
            if self.rate(layer, choice.provider, choice.model) is None:
                raise ValueError(f"the default {layer} {choice.provider}/{choice.model} is unknown")
        voice_provider = self.provider("voice", d.voice.provider)
        voices = voice_provider.voices_for(d.voice.model) if voice_provider else []
        if d.voice.voice_id not in {v.id for v in voices}:
            raise ValueError(f"the default voice_id {d.voice.voice_id} is unknown")
        stt = self.provider("transcriber", d.transcriber.provider)
        stt_model = stt.model(d.transcriber.model) if stt else None
        if stt_model is not None and d.transcriber.language not in stt_model.languages:
            raise ValueError(f"the default language {d.transcriber.language} is not supported")
        return self


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ValueError(f"{what}: {value} appears twice")
        seen.add(value)


def load_catalog(text: str) -> Catalog:
    return Catalog.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=1)
def get_catalog() -> Catalog:
    """The packaged catalog, read and checked on first use, then kept for the process."""
    return load_catalog(files("talkturo").joinpath("data/catalog.yaml").read_text("utf-8"))


class EstimateBreakdown(BaseModel):
    """Credits per minute of call, by layer."""

    telephony: Credits
    llm: Credits
    voice: Credits
    transcriber: Credits
    platform: Credits
    total: Credits


def estimate(
    catalog: Catalog,
    *,
    call_region: str,
    llm: tuple[str, str],
    voice: tuple[str, str],
    transcriber: tuple[str, str],
) -> EstimateBreakdown:
    """Credits per minute for these choices: telephony + llm + voice + transcriber + platform.

    A choice the catalog no longer lists (removed after an assistant chose it) is priced at the
    highest rate of its layer, so an estimate never understates the cost.
    """
    region = catalog.region(call_region)
    telephony = (
        region.credits_per_minute
        if region
        else max(r.credits_per_minute for r in catalog.telephony)
    )
    chosen: list[tuple[Layer, tuple[str, str]]] = [
        ("llm", llm),
        ("voice", voice),
        ("transcriber", transcriber),
    ]
    parts: dict[str, Decimal] = {}
    for layer, (provider, model) in chosen:
        rate = catalog.rate(layer, provider, model)
        parts[layer] = rate if rate is not None else catalog.highest_rate(layer)
    total = telephony + parts["llm"] + parts["voice"] + parts["transcriber"] + catalog.platform_fee
    return EstimateBreakdown(
        telephony=quantize_credits(telephony),
        llm=quantize_credits(parts["llm"]),
        voice=quantize_credits(parts["voice"]),
        transcriber=quantize_credits(parts["transcriber"]),
        platform=quantize_credits(catalog.platform_fee),
        total=quantize_credits(total),
    )
