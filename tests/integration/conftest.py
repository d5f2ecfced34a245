"""Fixtures shared by the integration tests (a test file may define its own to differ)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from talkturo import config
from talkturo.carrier.factory import set_carrier
from talkturo.local.template import Stack
from tests.fake_carrier import FakeCarrier


@pytest.fixture
def carrier(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCarrier]:
    """The fake carrier, with the platform's webhooks at a public URL."""
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://hooks.example.com")
    config.get_settings.cache_clear()
    fake = FakeCarrier()
    set_carrier(fake)
    yield fake
    set_carrier(None)
    config.get_settings.cache_clear()
