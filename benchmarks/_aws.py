"""The AWS side the benchmarks run against: the emulator and template.yaml's resources."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from talkturo.local.platform import EmulatorComponent, Resources
from talkturo.local.template import Stack


@contextlib.contextmanager
def local_aws(stack_name: str) -> Iterator[Stack]:
    """Emulator on a free port, resources provisioned, this process's environment set."""
    # Provisioning and the first requests log at INFO (pynamodb settings…): not figures.
    logging.getLogger("pynamodb").setLevel(logging.WARNING)
    # In this process, as these figures were always measured (one process, one core).
    emulator = EmulatorComponent(port=0, in_process=True)
    emulator.start()
    resources = Resources(
        emulator.emulator, admin_secret="bench-admin-secret", stack_name=stack_name
    )
    try:
        resources.start()
        assert resources.stack is not None
        yield resources.stack
    finally:
        resources.stop()
        emulator.stop()


def sign_up(name: str) -> tuple[str, str]:
    """A new account in the current stack: (account id, API key)."""
    from talkturo.domain.accounts import AccountCreate
    from talkturo.services.accounts import create_account

    account, key = create_account(AccountCreate(name=name))
    return account.id, key.secret
