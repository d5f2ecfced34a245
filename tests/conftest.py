"""Fixtures shared by every suite.

Integration tests run against the AWS emulator (moto's server on loopback) with resources
created from template.yaml itself; each test gets a fresh stack, so tests never see each
other's data.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.domain.accounts import AccountCreate
from talkturo.local.emulator import Emulator
from talkturo.local.template import Stack, provision
from talkturo.services import accounts
from talkturo.store import table

_stack_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    saved = dict(os.environ)
    with Emulator() as aws:
        os.environ.update(aws.environment())
        yield aws
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def stack(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh set of the template's resources, and the environment pointing at them."""
    created = provision(boto3.Session(), stack_name=f"t{next(_stack_numbers)}")
    for name, value in created.environment().items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    table.reset()
    yield created
    config.get_settings.cache_clear()
    table.reset()


@pytest.fixture
def client(stack: Stack) -> TestClient:
    from talkturo.api.app import create_app

    return TestClient(create_app())


@dataclass
class Tenant:
    account_id: str
    key_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def _sign_up(name: str) -> Tenant:
    account, key = accounts.create_account(AccountCreate(name=name, email=f"{name}@example.com"))
    return Tenant(account_id=account.id, key_id=key.id, secret=key.secret)


@pytest.fixture
def tenant(stack: Stack) -> Tenant:
    return _sign_up("acme")


@pytest.fixture
def other_tenant(stack: Stack) -> Tenant:
    """A second account: whatever `tenant` owns must stay invisible to it."""
    return _sign_up("globex")
