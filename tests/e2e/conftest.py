"""The local platform, started exactly as a user starts it: `talkturo dev` in a subprocess.

One platform serves the whole e2e session (starting it takes a couple of seconds). Tests share
its dev account, so a test that needs a clean slate signs up its own account through the admin
API (`platform.sign_up()`). Its data folder is a temporary one: tests never read (or change) a
developer's saved data. Tests that need platforms of their own (restarts) use
`start_platform()` and `stop_platform()`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

DEV_API_KEY = "tk_e2e_dev_key_0123456789abcdefghijkl"
ADMIN_SECRET = "e2e-admin-secret-0123456789abcdefghijkl"
READY_WITHIN_SECONDS = 60
STOPS_WITHIN_SECONDS = 5
# The banner's key line: "API key  tk_…   (generated…" or "from TALKTURO_DEV_API_KEY".
KEY_LINE = re.compile(r"API key\s+(?P<key>tk_\S+)")
# The banner's carrier line: "Carrier  http://…  (simulated Twilio; account AC…,\n  auth token …,"
CARRIER_LINE = re.compile(
    r"Carrier\s+(?P<url>http://\S+)\s+\(simulated Twilio; account (?P<sid>AC\w+),"
    r"\s+auth token (?P<token>\w+),"
)

_accounts = itertools.count(1)
T = TypeVar("T")


def talkturo_command() -> str:
    """The `talkturo` script installed next to the running interpreter (the venv's bin)."""
    return str(Path(sys.executable).parent / "talkturo")


# Ports are handed out below the kernel's ephemeral range (32768 and up by default): a port the
# kernel gave us to learn it was free may be given again, meanwhile, to an outgoing connection
# (the platform makes hundreds while it starts), and the platform could then not listen on it.
_PORTS = range(20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never handed out before in this test run."""
    for port in random.sample(_PORTS, len(_PORTS)):
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass(frozen=True)
class Ports:
    api: int
    aws: int
    carrier: int
    voice: int
    stripe: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())

    def arguments(self) -> list[str]:
        return [
            "--port",
            str(self.api),
            "--aws-port",
            str(self.aws),
            "--carrier-port",
            str(self.carrier),
            "--voice-port",
            str(self.voice),
            "--stripe-port",
            str(self.stripe),
        ]


@dataclass
class LocalPlatform:
    base_url: str
    api_key: str
    admin_secret: str
    aws_endpoint: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    # The carrier simulator, as the banner printed it (read once the platform is ready).
    simulator_url: str = ""
    simulator_account_sid: str = ""
    simulator_auth_token: str = field(default="", repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_secret}"}

    def client(self, api_key: str | None = None) -> httpx.Client:
        """An HTTP client on the API, authenticated with `api_key` (default: the dev key)."""
        key = api_key or self.api_key
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

    def sign_up(self, name: str | None = None) -> dict[str, Any]:
        """A fresh account through the admin API: {"account": …, "api_key": {…, "secret"}}."""
        name = name or f"e2e account {next(_accounts)}"
        answer = httpx.post(
            f"{self.base_url}/v1/admin/accounts",
            json={"name": name, "email": "owner@example.com"},
            headers=self.admin_headers,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def simulator(self) -> httpx.Client:
        """An HTTP client on the carrier simulator's control API (/_sim/…)."""
        return httpx.Client(
            base_url=self.simulator_url,
            auth=(self.simulator_account_sid, self.simulator_auth_token),
            timeout=10,
        )

    def cli_environment(self) -> dict[str, str]:
        """The environment for `talkturo` CLI commands aimed at this platform: what a user
        exports from the banner (the API's URL and keys, the carrier simulator's URL and
        credentials for `talkturo call …`)."""
        return {
            **os.environ,
            "TALKTURO_API_URL": self.base_url,
            "TALKTURO_API_KEY": self.api_key,
            "TALKTURO_ADMIN_SECRET": self.admin_secret,
            "TALKTURO_SIMULATOR_URL": self.simulator_url,
            "TWILIO_ACCOUNT_SID": self.simulator_account_sid,
            "TWILIO_AUTH_TOKEN": self.simulator_auth_token,
            # A `talkturo dev` started from a test never finds a developer's data.
            "TALKTURO_DATA_DIR": str(self.log_path.parent / "cli-data"),
        }

    def cli(self, *arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
        """Run `talkturo <arguments>` against this platform, as a user would in a terminal."""
        return subprocess.run(
            [talkturo_command(), *arguments],
            env={**self.cli_environment(), **environment},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_platform(
    log_path: Path,
    data_dir: Path,
    *arguments: str,
    ports: Ports | None = None,
    dev_api_key: str | None = DEV_API_KEY,
) -> LocalPlatform:
    """`talkturo dev` in a subprocess (its own session: a kill reaches its voice service too),
    ready once /health answers and the banner is printed. `dev_api_key=None`: the platform
    generates the key (read from the banner)."""
    ports = ports or Ports.free()
    environment = {
        **os.environ,
        "TALKTURO_ADMIN_SECRET": ADMIN_SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    environment.pop("TALKTURO_DATA_DIR", None)
    environment.pop("TALKTURO_DEV_API_KEY", None)
    if dev_api_key is not None:
        environment["TALKTURO_DEV_API_KEY"] = dev_api_key
    with log_path.open("wb") as log:
        # Output goes to a file, not a pipe nobody reads (a full pipe would block the platform).
        process = subprocess.Popen(
            [
                talkturo_command(),
                "dev",
                *ports.arguments(),
                "--data-dir",
                str(data_dir),
                *arguments,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    platform = LocalPlatform(
        base_url=f"http://127.0.0.1:{ports.api}",
        api_key=dev_api_key or "",
        admin_secret=ADMIN_SECRET,
        aws_endpoint=f"http://127.0.0.1:{ports.aws}",
        log_path=log_path,
        process=process,
    )
    try:
        _wait_until_ready(platform)
        _read_banner(platform)
    except BaseException:
        _kill(platform)
        raise
    assert platform.simulator_url == f"http://127.0.0.1:{ports.carrier}", platform.log()
    return platform


@contextlib.contextmanager
def running(
    log_path: Path, data_dir: Path, *arguments: str, **options: Any
) -> Iterator[LocalPlatform]:
    """`start_platform()`, then Ctrl-C at the end (unless the block killed it already)."""
    platform = start_platform(log_path, data_dir, *arguments, **options)
    try:
        yield platform
    finally:
        if platform.process.poll() is None:
            stop_platform(platform)


def eventually(read: Callable[[], T], done: Callable[[T], bool], within: float, what: str) -> T:
    """Read until `done` holds, for at most `within` seconds (then fail with the last value)."""
    deadline = time.monotonic() + within
    pause = 0.05
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within:g} s; last seen: {value!r}")
        time.sleep(pause)
        pause = min(0.5, pause * 1.5)


@pytest.fixture(scope="session")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    folder = tmp_path_factory.mktemp("platform")
    platform = start_platform(folder / "talkturo-dev.log", folder / "data")
    try:
        yield platform
    finally:
        if platform.process.poll() is not None:
            pytest.fail(
                f"`talkturo dev` died during the tests ({platform.process.returncode}):\n"
                + platform.log()
            )
        stop_platform(platform)


def _wait_until_ready(platform: LocalPlatform) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if platform.process.poll() is not None:
            pytest.fail(
                f"`talkturo dev` exited with {platform.process.returncode} while starting:\n"
                + platform.log()
            )
        try:
            if httpx.get(f"{platform.base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"`talkturo dev` not ready after {READY_WITHIN_SECONDS} s:\n" + platform.log())


def _read_banner(platform: LocalPlatform) -> None:
    """The simulator's URL and credentials, from the banner (printed just after /health
    answers), as a user copies them."""
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while (found := CARRIER_LINE.search(platform.log())) is None:
        if time.monotonic() > deadline or platform.process.poll() is not None:
            pytest.fail("the banner shows no carrier simulator line:\n" + platform.log())
        time.sleep(0.05)
    platform.simulator_url = found["url"]
    platform.simulator_account_sid = found["sid"]
    platform.simulator_auth_token = found["token"]
    if not platform.api_key:
        key = KEY_LINE.search(platform.log())
        assert key is not None, platform.log()
        platform.api_key = key["key"]


def _kill(platform: LocalPlatform) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(platform.process.pid, signal.SIGKILL)
    platform.process.wait()


def kill_platform(platform: LocalPlatform) -> None:
    """kill -9, the platform and its voice service at once (a crash, a closed terminal)."""
    assert platform.process.poll() is None, platform.log()
    _kill(platform)


def stop_platform(platform: LocalPlatform) -> None:
    """Ctrl-C, as a user stops it: it must exit 0 within STOPS_WITHIN_SECONDS."""
    process = platform.process
    assert process.poll() is None, f"`talkturo dev` had stopped already:\n{platform.log()}"
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=STOPS_WITHIN_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(platform)
        pytest.fail(
            f"`talkturo dev` did not stop within {STOPS_WITHIN_SECONDS} s of Ctrl-C:\n"
            + platform.log()
        )
    assert code == 0, f"`talkturo dev` exited with {code} on Ctrl-C:\n{platform.log()}"
