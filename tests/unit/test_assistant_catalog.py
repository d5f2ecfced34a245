"""The provider catalog, its rate table and the per-minute estimate."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from itertools import product

import pytest
import yaml
from pydantic import ValidationError

from talkturo.domain.catalog import Catalog, estimate, get_catalog, load_catalog


@pytest.fixture
def catalog() -> Catalog:
    return get_catalog()


def _raw() -> dict:
    from importlib.resources import files

    return yaml.safe_load(files("talkturo").joinpath("data/catalog.yaml").read_text("utf-8"))


def test_every_provider_of_the_spec_is_listed(catalog: Catalog) -> None:
    # Given the packaged catalog / Then each layer offers exactly SPEC §2's providers
    assert [p.id for p in catalog.llm] == [
        "openai",
        "anthropic",
        "google",
        "deepseek",
        "qwen",
        "kimi",
    ]
    assert [p.id for p in catalog.voice] == ["cartesia", "elevenlabs", "openai", "dashscope"]
    assert [p.id for p in catalog.transcriber] == [
        "deepgram",
        "assemblyai",
        "cartesia",
        "elevenlabs",
    ]


def test_every_choice_is_complete(catalog: Catalog) -> None:
    # Every voice model has at least one voice, every transcriber model at least one language
    for provider in catalog.voice:
        for model in provider.models:
            assert provider.voices_for(model.id), f"{provider.id}/{model.id} has no voice"
    for provider in catalog.transcriber:
        for model in provider.models:
            assert model.languages, f"{provider.id}/{model.id} has no language"
            assert all(isinstance(lang, str) for lang in model.languages)
    # And each phone number country of SPEC §3 is in exactly one region
    countries = [c for region in catalog.telephony for c in region.countries]
    assert sorted(countries) == sorted(["US", "CA", "DE", "AT", "CH", "AE"])


def test_voices_limited_to_some_models(catalog: Catalog) -> None:
    openai = catalog.provider("voice", "openai")
    assert openai is not None
    assert "ballad" in {v.id for v in openai.voices_for("gpt-4o-mini-tts")}
    assert "ballad" not in {v.id for v in openai.voices_for("tts-1")}
    assert "alloy" in {v.id for v in openai.voices_for("tts-1")}


def _price(catalog: Catalog, region: str, llm: str, voice: str, stt: str) -> Decimal:
    def split(value: str) -> tuple[str, str]:
        provider, model = value.split("/")
        return provider, model

    return estimate(
        catalog, call_region=region, llm=split(llm), voice=split(voice), transcriber=split(stt)
    ).total


def test_default_assistant_is_about_one_credit_a_minute(catalog: Catalog) -> None:
    d = catalog.defaults
    breakdown = estimate(
        catalog,
        call_region=d.call_region,
        llm=(d.llm.provider, d.llm.model),
        voice=(d.voice.provider, d.voice.model),
        transcriber=(d.transcriber.provider, d.transcriber.model),
    )
    assert breakdown.total == Decimal("1.0000")


def test_estimate_is_the_sum_of_its_parts(catalog: Catalog) -> None:
    # Given an explicit combination / When estimated / Then each part is its rate, total the sum
    breakdown = estimate(
        catalog,
        call_region="eu",
        llm=("google", "gemini-2.5-flash"),
        voice=("openai", "gpt-4o-mini-tts"),
        transcriber=("assemblyai", "universal-streaming-english"),
    )
    assert breakdown.model_dump(mode="json") == {
        "telephony": "0.2500",
        "llm": "0.1000",
        "voice": "0.1500",
        "transcriber": "0.1000",
        "platform": "0.3000",
        "total": "0.9000",
    }


def test_cheapest_and_dearest_combinations_differ_sensibly(catalog: Catalog) -> None:
    # Given every combination the catalog allows / Then the spread is real but bounded
    totals = [
        _price(catalog, r.id, f"{lp.id}/{lm.id}", f"{vp.id}/{vm.id}", f"{sp.id}/{sm.id}")
        for r in catalog.telephony
        for lp, vp, sp in product(catalog.llm, catalog.voice, catalog.transcriber)
        for lm, vm, sm in product(lp.models, vp.models, sp.models)
    ]
    cheapest, dearest = min(totals), max(totals)
    assert Decimal("0.5") <= cheapest < Decimal("1.0")
    assert Decimal("1.5") <= dearest <= Decimal("3.0")


def test_removed_choice_is_priced_at_its_layers_highest_rate(catalog: Catalog) -> None:
    # Given an assistant whose model was since removed from the catalog
    breakdown = estimate(
        catalog,
        call_region="us",
        llm=("openai", "gpt-3.5-turbo"),
        voice=("cartesia", "sonic-3"),
        transcriber=("deepgram", "nova-3"),
    )
    # Then it is never under-priced
    assert breakdown.llm == catalog.highest_rate("llm")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda c: c.update(platform_fee=0.12345), "four decimal places"),
        (lambda c: c["telephony"][0].update(credits_per_minute=-1), "negative"),
        (lambda c: c["llm"].append(c["llm"][0]), "appears twice"),
        (lambda c: c["defaults"]["llm"].update(model="gpt-2"), "unknown"),
        (lambda c: c["defaults"].update(call_region="mars"), "not a region"),
        (lambda c: c["voice"][2]["voices"][-1].update(models=["tts-9"]), "unknown model"),
        (lambda c: c["transcriber"][0]["models"][0].update(languages=["en", False]), "string"),
    ],
)
def test_a_bad_edit_of_the_data_fails_loading(edit: Callable[[dict], object], problem: str) -> None:
    # Given the catalog's data with one mistake / When loaded / Then it is refused, explained
    data = _raw()
    edit(data)
    with pytest.raises(ValidationError) as raised:
        load_catalog(yaml.safe_dump(data))
    assert problem in str(raised.value)


def test_nothing_is_loaded_at_import_time() -> None:
    # Given a fresh interpreter / When the whole API is imported / Then the catalog is not read yet
    code = (
        "import talkturo.api.app\n"
        "from talkturo.domain.catalog import get_catalog\n"
        "from talkturo.domain.assistant_templates import get_templates\n"
        "assert get_catalog.cache_info().currsize == 0\n"
        "assert get_templates.cache_info().currsize == 0\n"
        "get_catalog(); get_catalog()\n"
        "assert get_catalog.cache_info().hits == 1\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
