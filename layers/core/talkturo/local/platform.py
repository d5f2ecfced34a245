"""`talkturo dev`: the whole platform on this machine, on loopback, with no AWS account.

The pieces are components with a name, `start()`, `stop()` and `alive()`, run by a small
supervisor: started in order, stopped in reverse, and all stopped when any one dies or when
the process gets SIGINT/SIGTERM. Today they are

1. ``aws-emulator``: moto's server (DynamoDB, SQS, S3 …) on its own port (default 4566), in a
   process of its own (so that it answers on one core while the workers run on the other);
2. ``resources``: the tables, buckets and queues of template.yaml, created in the emulator, and
   this process's environment set from them exactly as Lambda's would be (only the endpoint
   differs: AWS_ENDPOINT_URL points at the emulator);
3. ``data``: fills them from the data folder's snapshot, then saves one every few seconds
   when anything changed and on stop (local/persistence.py; the emulator's process reads and
   writes the data, this one decides when);
4. ``dev-account``: an account ready to use ("Local developer") and its API key, the same
   account (and key) again after a restart;
5. ``sqs-runner``: feeds each queue's messages to the worker functions the template subscribes;
6. ``carrier-simulator``: a local phone network speaking Twilio's REST API and webhooks (its own
   port, default 8020; its credentials and the numbers bought are kept in the snapshot);
   TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_API_BASE_URL point the carrier adapter at
   it (docs/carrier.md);
7. ``stripe-simulator``: a local Stripe (its own port, default 8025) with a hosted payment page
   and test cards; its webhooks, signed as Stripe signs them, go to the platform's
   /billing/stripe; STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRETS and STRIPE_API_BASE_URL point the
   billing adapter at it (docs/billing.md); its objects are kept in the snapshot;
8. ``voice``: the voice service, `python -m talkturo.voice` as its own process (as the
   container runs it), on its own port (default 8030); providers without a key are served by
   the offline stand-ins (TALKTURO_OFFLINE_PROVIDERS=1);
9. ``api``: the API app (the one Lambda runs behind Mangum) served by uvicorn. It starts last,
   so once /health answers, everything else is up.

``schedules`` (local/schedules.py) invokes the template's scheduled functions (`rate(...)`)
once shortly after start, then at their rate.
The data lives in memory while the platform runs, and in the data folder between runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Generic, Protocol, TypeVar

from talkturo.local.carrier_sim import CarrierSimulator, SimulatorError
from talkturo.local.emulator import Emulator
from talkturo.local.emulator_process import EmulatorError, EmulatorProcess
from talkturo.local.persistence import (
    DEFAULT_DATA_DIR,
    DataError,
    DataFolder,
    Persistence,
)
from talkturo.local.runner import LONG_WAIT_SECONDS, SqsRunner, describe
from talkturo.local.schedules import ScheduleRunner
from talkturo.local.schedules import describe as describe_schedules
from talkturo.local.serving import http_url, listening_socket, wait_until_started
from talkturo.local.stripe_sim import SimulatorError as StripeSimulatorError
from talkturo.local.stripe_sim import StripeSimulator
from talkturo.local.template import Stack

logger = logging.getLogger("local.platform")

# The functions whose batches are worked in processes of their own (one per batch worked at
# once, as Lambda's execution environments are): the contact import's batches are CPU-bound,
# and in the platform's process two of them would take turns on one core, with the API.
OWN_PROCESS = frozenset({"ContactImportFunction"})

STACK_NAME = "talkturo-local"
DEV_ACCOUNT_NAME = "Local developer"
KEY_PREFIX = "tk_"
MIN_KEY_LENGTH = 24
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# Settings from a developer's machine that would point boto3 somewhere other than the emulator
# (a real account, a profile, another endpoint). The platform removes them from its environment.
_FOREIGN_AWS_SETTINGS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


class PlatformError(Exception):
    """Something the user can fix (a port in use, a malformed key); the message says how."""


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def alive(self) -> bool: ...


class Supervisor:
    """Starts components in order, stops them in reverse, and notices when one dies."""

    def __init__(self, components: list[Component] | None = None) -> None:
        self.components: list[Component] = list(components or [])
        self._started: list[Component] = []

    def add(self, component: Component) -> None:
        self.components.append(component)

    def start(self) -> None:
        for component in self.components:
            logger.debug("starting %s", component.name)
            try:
                component.start()
            except BaseException:
                self.stop()
                raise
            self._started.append(component)

    def stop(self) -> None:
        while self._started:
            component = self._started.pop()
            logger.debug("stopping %s", component.name)
            try:
                component.stop()
            except Exception:  # the others must still be stopped
                logger.exception("%s did not stop cleanly", component.name)

    def dead(self) -> list[str]:
        return [c.name for c in self._started if not c.alive()]


# ---------------------------------------------------------------------------------- components
class EmulatorComponent:
    """The AWS emulator: in a process of its own (local/emulator_process.py), or with
    `in_process` in this one (what the benchmarks that time a single process use)."""

    name = "aws-emulator"

    def __init__(self, port: int, *, in_process: bool = False) -> None:
        self.emulator: Emulator | EmulatorProcess = (
            Emulator(host="127.0.0.1", port=port)
            if in_process
            else EmulatorProcess(host="127.0.0.1", port=port)
        )
        self._port = port

    def start(self) -> None:
        # werkzeug reports a taken port by printing and exiting; find out first, and say more.
        reason = _cannot_bind("127.0.0.1", self._port)
        if reason is None:
            try:
                self.emulator.start()
                return
            except (OSError, SystemExit, EmulatorError) as exc:
                reason = getattr(exc, "strerror", None) or "address in use"
                if isinstance(exc, EmulatorError):
                    reason = str(exc)
        raise PlatformError(
            f"the AWS emulator cannot listen on 127.0.0.1:{self._port} ({reason}). "
            "Is another `talkturo dev` (or LocalStack) running? Choose another port with "
            "--aws-port."
        )

    def stop(self) -> None:
        self.emulator.stop()

    def alive(self) -> bool:
        return self.emulator.running


class Resources:
    """template.yaml's resources in the emulator, and the environment that points at them."""

    name = "resources"

    def __init__(
        self,
        emulator: Emulator | EmulatorProcess,
        admin_secret: str,
        stack_name: str = STACK_NAME,
    ) -> None:
        self._emulator = emulator
        self._admin_secret = admin_secret
        self._stack_name = stack_name
        self._saved: dict[str, str] | None = None
        self.stack: Stack | None = None

    def start(self) -> None:
        import boto3

        from talkturo.local.template import provision

        self._saved = dict(os.environ)
        for name in list(os.environ):
            if name in _FOREIGN_AWS_SETTINGS or name.startswith("AWS_ENDPOINT_URL_"):
                del os.environ[name]
        os.environ.update(self._emulator.environment())
        # Nothing from ~/.aws (profiles, credential processes, endpoints) may leak in.
        os.environ["AWS_CONFIG_FILE"] = os.devnull
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        session = boto3.Session()
        self.stack = provision(session, stack_name=self._stack_name)
        os.environ.update(self.stack.environment())
        os.environ["TALKTURO_ADMIN_SECRET"] = self._admin_secret
        # Customer events may go to this machine's loopback over plain http (the event inbox,
        # `talkturo events listen`); anywhere else still needs https and a public address.
        os.environ.setdefault("TALKTURO_OUTBOUND_ALLOW_HTTP", "127.0.0.0/8,::1/128")
        # Signs the tokens naming a call on its media stream (a Secrets Manager secret on AWS).
        os.environ.setdefault("VOICE_TOKEN_SECRET", secrets.token_urlsafe(32))
        _forget_cached_settings()

    def stop(self) -> None:
        if self._saved is not None:
            os.environ.clear()
            os.environ.update(self._saved)
            self._saved = None
            _forget_cached_settings()

    def alive(self) -> bool:
        return True


class DevAccount:
    """The dev account: created on the first start, found again (by its saved id) after that.

    Its key: TALKTURO_DEV_API_KEY when set (added to the account if it is new to it), else the
    generated one saved with the data (kept in the data folder, so it stays the same), else a
    new one on the same account.
    """

    name = "dev-account"

    def __init__(self, chosen_key: str | None, saved: Callable[[], Any] = lambda: None) -> None:
        self._chosen_key = chosen_key
        self._saved = saved
        self.account_id = ""
        self.api_key = ""
        self.found_again = False

    def start(self) -> None:
        from talkturo.domain.accounts import AccountCreate
        from talkturo.errors import AuthenticationFailed, NotFound
        from talkturo.services import accounts

        saved = self._saved() or {}
        account_id = str(saved.get("account_id") or "")
        try:
            account = accounts.get_account(account_id) if account_id else None
        except NotFound:
            account = None
        if account is None:
            account, key = accounts.create_account(
                AccountCreate(name=DEV_ACCOUNT_NAME),
                key_name="dev",
                chosen_secret=self._chosen_key,
            )
            self.account_id, self.api_key = account.id, key.secret
            return
        self.account_id = account.id
        self.found_again = True
        wanted = self._chosen_key or saved.get("api_key")
        if wanted:
            try:
                if accounts.authenticate(f"Bearer {wanted}").account_id == account.id:
                    self.api_key = wanted
                    return
            except AuthenticationFailed:
                pass  # revoked, or never a key of it: one is added below
        self.api_key = accounts.create_api_key(
            account.id, "dev", chosen_secret=self._chosen_key
        ).secret

    def saved_state(self) -> dict[str, Any] | None:
        if not self.account_id:  # not started (yet): what was restored stays
            saved: dict[str, Any] | None = self._saved()
            return saved
        # A key from TALKTURO_DEV_API_KEY is the user's to keep; a generated one is kept here.
        generated = None if self._chosen_key else self.api_key
        return {"account_id": self.account_id, "api_key": generated}

    def stop(self) -> None:
        pass

    def alive(self) -> bool:
        return True


class ApiServer:
    """The API app under uvicorn, in a thread of this process."""

    name = "api"

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        return http_url(self._host, self.port)

    def start(self) -> None:
        import uvicorn

        from talkturo.api.app import create_app
        from talkturo.webhooks.asgi import with_carrier_webhooks

        try:
            sock = listening_socket(self._host, self._port)
        except OSError as exc:
            raise PlatformError(
                f"the API cannot listen on {self._host}:{self._port} ({exc.strerror}). "
                "Choose another port with --port."
            ) from None
        self.port = sock.getsockname()[1]
        # The carrier reaches the webhooks here (unless a tunnel's URL was given).
        if not os.environ.get("PUBLIC_BASE_URL"):
            os.environ["PUBLIC_BASE_URL"] = self.url
            from talkturo.config import get_settings

            get_settings.cache_clear()
        config = uvicorn.Config(
            # The API, and the carrier's webhooks (/carrier/*) with the Lambda's handler code.
            with_carrier_webhooks(create_app()),
            lifespan="off",
            log_level="warning",
            # Its lines through the console's format (which names the thread), not uvicorn's.
            log_config=None,
            timeout_graceful_shutdown=1,
        )
        # Quiet start-up, but one line per request: handy while developing against the API.
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
        )
        self._thread.start()
        if not wait_until_started(self._server, self._thread, seconds=15):
            raise PlatformError("the API server did not start; see the log above")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class CarrierSimulatorComponent:
    """The carrier simulator, and the environment that points the carrier adapter at it."""

    name = "carrier-simulator"

    def __init__(self, port: int, saved: Callable[[], Any] = lambda: None) -> None:
        self._port = port
        self._restored = saved
        self.simulator = CarrierSimulator(host="127.0.0.1", port=port)
        self._saved: dict[str, str | None] = {}
        self._started = False

    def start(self) -> None:
        restored = self._restored()
        if restored:
            # The same account and numbers as before the restart: the numbers in the table
            # keep resolving, and a terminal that exported the credentials keeps working.
            self.simulator = CarrierSimulator(
                host="127.0.0.1",
                port=self._port,
                account_sid=restored["account_sid"],
                auth_token=restored["auth_token"],
                numbers=restored.get("numbers", []),
            )
        try:
            self.simulator.start()
        except SimulatorError as exc:
            raise PlatformError(f"{exc}. Choose another port with --carrier-port.") from None
        settings = {
            "TWILIO_ACCOUNT_SID": self.simulator.account_sid,
            "TWILIO_AUTH_TOKEN": self.simulator.auth_token,
            "TWILIO_API_BASE_URL": self.simulator.url,
            "TWILIO_SECRET_ARN": "",
        }
        self._saved = {name: os.environ.get(name) for name in settings}
        os.environ.update(settings)
        _forget_cached_settings()
        self._started = True

    def saved_state(self) -> dict[str, Any] | None:
        if not self._started:  # not started (yet): what was restored stays
            restored: dict[str, Any] | None = self._restored()
            return restored
        return {
            **self.simulator.saved_state(),
            # Where the numbers' webhooks point; a restart on other ports moves them.
            "public_base_url": os.environ.get("PUBLIC_BASE_URL", ""),
        }

    def follow_api(self) -> None:
        """Once the API listens: restored numbers whose webhooks went to the API's old address
        (another --port) go to its address now."""
        restored = self._restored() or {}
        old, new = restored.get("public_base_url"), os.environ.get("PUBLIC_BASE_URL")
        if old and new and old != new:
            self.simulator.rebase_urls(old, new)

    def stop(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}
        _forget_cached_settings()
        self.simulator.stop()

    def alive(self) -> bool:
        return self.simulator.running


# What the local Stripe does to its webhooks unless TALKTURO_STRIPE_SWITCHES says otherwise:
# every event three times, each change's events in reverse order (Stripe's own delivery is at
# least once and unordered; the platform must credit once all the same).
DEV_STRIPE_SWITCHES = "copies=3,reorder=true"


def parse_switches(text: str) -> dict[str, str]:
    """`copies=3,reorder=true` → {"copies": "3", "reorder": "true"} (PlatformError if bad)."""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise PlatformError(f"TALKTURO_STRIPE_SWITCHES: {part!r} is not name=value")
        found[name.strip()] = value.strip()
    return found


class StripeSimulatorComponent:
    """The Stripe simulator, and the environment that points the billing adapter at it. Its
    webhook endpoint is the API's /billing/stripe (set once the API listens: `follow_api`)."""

    name = "stripe-simulator"

    def __init__(self, port: int, saved: Callable[[], Any] = lambda: None) -> None:
        self._port = port
        self._restored = saved
        self.simulator = StripeSimulator(host="127.0.0.1", port=port)
        self._saved: dict[str, str | None] = {}
        self._started = False

    def start(self) -> None:
        restored = self._restored()
        if restored:
            # The same keys and objects as before: payments, customers and saved cards stay.
            self.simulator = StripeSimulator(
                host="127.0.0.1",
                port=self._port,
                secret_key=restored.get("secret_key"),
                webhook_secret=restored.get("webhook_secret"),
                saved=restored,
            )
        try:
            self.simulator.start()
        except StripeSimulatorError as exc:
            raise PlatformError(f"{exc}. Choose another port with --stripe-port.") from None
        self.simulator.restore_endpoints()
        switches = os.environ.get("TALKTURO_STRIPE_SWITCHES", DEV_STRIPE_SWITCHES)
        try:
            self.simulator.switches.update(**parse_switches(switches))
        except ValueError as exc:
            self.simulator.stop()
            raise PlatformError(f"TALKTURO_STRIPE_SWITCHES: {exc}") from None
        settings = {
            "STRIPE_SECRET_KEY": self.simulator.secret_key,
            "STRIPE_WEBHOOK_SECRETS": self.simulator.webhook_secret,
            "STRIPE_API_BASE_URL": self.simulator.url,
            "STRIPE_SECRET_ARN": "",
        }
        self._saved = {name: os.environ.get(name) for name in settings}
        os.environ.update(settings)
        _forget_cached_settings()
        self._started = True

    def follow_api(self) -> None:
        """Once the API listens: its /billing/stripe is where the webhooks go."""
        url = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/") + "/billing/stripe"
        if self.simulator.sender.endpoints:
            self.simulator.rebase_endpoints(url)
        else:
            self.simulator.add_endpoint(url)
        # The webhooks the platform had not answered when it stopped go out now.
        resumed = self.simulator.resume_deliveries()
        if resumed:
            logger.info("stripe simulator: %d webhook deliveries sent again", resumed)

    def saved_state(self) -> dict[str, Any] | None:
        if not self._started:  # not started (yet): what was restored stays
            restored: dict[str, Any] | None = self._restored()
            return restored
        return self.simulator.saved_state()

    def stop(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}
        _forget_cached_settings()
        self.simulator.stop()

    def alive(self) -> bool:
        return self.simulator.running


class VoiceServiceComponent:
    """The voice service as a child process: the same entrypoint as the container's."""

    name = "voice"
    START_SECONDS = 30.0

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> None:
        problem = _cannot_bind(self.host, self.port)
        if problem is not None:
            raise PlatformError(
                f"the voice service cannot listen on {self.host}:{self.port} ({problem}). "
                "Choose another port with --voice-port."
            )
        os.environ["VOICE_SERVICE_URL"] = self.url
        # The platform's own workers (the post-call analysis) use the stand-ins too.
        os.environ.setdefault("TALKTURO_OFFLINE_PROVIDERS", "1")
        _forget_cached_settings()
        env = dict(os.environ)
        env.update(VOICE_HOST=self.host, VOICE_PORT=str(self.port), VOICE_DRAIN_SECONDS="5")
        env.setdefault("TALKTURO_OFFLINE_PROVIDERS", "1")
        self._process = subprocess.Popen([sys.executable, "-m", "talkturo.voice"], env=env)
        deadline = time.monotonic() + self.START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PlatformError("the voice service exited at start; see the log above")
            if self._healthy():
                return
            time.sleep(0.1)
        raise PlatformError("the voice service did not answer /health in time")

    def _healthy(self) -> bool:
        import urllib.request

        url = f"http://{self.host}:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # it drains live calls, then exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


R = TypeVar("R", SqsRunner, ScheduleRunner)


class StackRunner(Generic[R]):
    """A runner built once the stack exists: it reads the stack's functions (their queues or
    their schedules) and runs their handlers."""

    def __init__(self, name: str, resources: Resources, build: Callable[[Stack], R]) -> None:
        self.name = name
        self._resources = resources
        self._build: Callable[[Stack], R] = build
        self.runner: R | None = None

    def start(self) -> None:
        assert self._resources.stack is not None, "the resources start first"
        self.runner = self._build(self._resources.stack)
        self.runner.start()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()

    def alive(self) -> bool:
        return self.runner is not None and self.runner.alive()


def _cannot_bind(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, or None when it can."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


# ---------------------------------------------------------------------------------- platform
@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 8000
    aws_port: int = 4566
    carrier_port: int = 8020
    stripe_port: int = 8025
    voice_port: int = 8030
    admin_secret: str | None = None  # None: generate one
    dev_api_key: str | None = None  # None: generate one (once: it is kept with the data)
    data_dir: str = DEFAULT_DATA_DIR
    fresh: bool = False  # forget the saved data first

    @classmethod
    def from_environment(cls, **given: Any) -> Options:
        return cls(
            admin_secret=os.environ.get("TALKTURO_ADMIN_SECRET") or None,
            dev_api_key=os.environ.get("TALKTURO_DEV_API_KEY") or None,
            **given,
        )


def check_dev_api_key(key: str) -> None:
    if not key.startswith(KEY_PREFIX) or len(key) < MIN_KEY_LENGTH:
        raise PlatformError(
            f"TALKTURO_DEV_API_KEY must start with {KEY_PREFIX!r} and be at least "
            f"{MIN_KEY_LENGTH} characters long (it becomes the dev account's API key); "
            "unset it to get a generated key"
        )


class LocalPlatform:
    def __init__(self, options: Options) -> None:
        if options.dev_api_key is not None:
            check_dev_api_key(options.dev_api_key)
        self.options = options
        self.admin_secret_generated = options.admin_secret is None
        self.admin_secret = options.admin_secret or secrets.token_urlsafe(32)
        self.aws = EmulatorComponent(options.aws_port)
        self.resources = Resources(self.aws.emulator, self.admin_secret)
        self.data = Persistence(
            self.aws.emulator,
            DataFolder(Path(options.data_dir)),
            f"{STACK_NAME}-",
            fresh=options.fresh,
        )
        self.dev_account = DevAccount(options.dev_api_key, lambda: self.data.part("dev_account"))
        self.api = ApiServer(options.host, options.port)
        self.workers = StackRunner(
            "sqs-runner",
            self.resources,
            lambda stack: SqsRunner(
                stack,
                wait_seconds=LONG_WAIT_SECONDS,
                end_polls=self.aws.emulator.end_long_polls,
                own_process=OWN_PROCESS,
            ),
        )
        self.carrier = CarrierSimulatorComponent(
            options.carrier_port, lambda: self.data.part("carrier")
        )
        self.data.add_part("dev_account", self.dev_account.saved_state)
        self.stripe = StripeSimulatorComponent(
            options.stripe_port, lambda: self.data.part("stripe")
        )
        self.data.add_part("carrier", self.carrier.saved_state)
        self.data.add_part("stripe", self.stripe.saved_state)
        self.schedules = StackRunner("schedules", self.resources, ScheduleRunner)
        self.voice = VoiceServiceComponent("127.0.0.1", options.voice_port)
        self.supervisor = Supervisor(
            [
                self.aws,
                self.resources,
                self.data,
                self.dev_account,
                self.workers,
                self.carrier,
                self.stripe,
                self.schedules,
                self.voice,
                self.api,
            ]
        )

    def start(self) -> None:
        try:
            self.supervisor.start()
        except DataError as exc:
            raise PlatformError(str(exc)) from None
        self.carrier.follow_api()
        self.stripe.follow_api()

    def stop(self) -> None:
        self.supervisor.stop()

    def banner(self) -> str:
        api = self.api.url
        key_from_env = self.options.dev_api_key is not None
        key_line = (
            "from TALKTURO_DEV_API_KEY (not shown)"
            if key_from_env
            else f"{self.dev_account.api_key}   (generated once, kept in the data folder)"
        )
        shown_key = "$TALKTURO_DEV_API_KEY" if key_from_env else self.dev_account.api_key
        admin_line = (
            f"{self.admin_secret}   (generated)"
            if self.admin_secret_generated
            else "from TALKTURO_ADMIN_SECRET (not shown)"
        )
        workers = describe(self.workers.runner) if self.workers.runner is not None else []
        lines = [
            "",
            "Talkturo is running locally: no AWS account, no provider keys needed.",
            "",
            f"  API            {api}",
            f"  API docs       {api}/docs",
            f"  AWS emulator   {self.aws.emulator.endpoint}   (stack {STACK_NAME!r} "
            "from template.yaml)",
            f"  Dev account    {DEV_ACCOUNT_NAME} ({self.dev_account.account_id})",
            f"  API key        {key_line}",
            f"  Admin secret   {admin_line}",
        ]
        lines += [f"  Worker         {w}" for w in workers]
        stack = self.resources.stack
        lines += [
            f"  Workflow       {machine} ({definition}, run by the emulator)"
            for machine, definition in (stack.state_machines if stack else {}).items()
        ]
        if self.schedules.runner is not None:
            lines += [f"  Schedule       {s}" for s in describe_schedules(self.schedules.runner)]
        sim = self.carrier.simulator
        lines += [
            f"  Carrier        {sim.url}   (simulated Twilio; account {sim.account_sid},",
            f"                 auth token {sim.auth_token}, kept in the data folder)",
        ]
        stripe_sim = self.stripe.simulator
        switches = stripe_sim.switches
        lines += [
            f"  Stripe         {stripe_sim.url}   (simulated Stripe, test cards; webhooks to "
            f"{api}/billing/stripe,",
            f"                 each event sent {switches.copies}x"
            + (", in reverse order" if switches.reorder else "")
            + ": TALKTURO_STRIPE_SWITCHES)",
        ]
        offline = os.environ.get("TALKTURO_OFFLINE_PROVIDERS", "1") in ("1", "true", "yes")
        from talkturo.voice.providers.stt import whisper
        from talkturo.voice.providers.tts import piper

        neural = whisper.available() and piper.available()
        speech = "Whisper, Piper" if neural else "pocketsphinx, espeak-ng"
        lines += [
            f"  Voice service  {self.voice.url}/media   (health: "
            f"http://127.0.0.1:{self.voice.port}/health)",
            "                 providers without a key: "
            + (
                f"offline stand-ins ({speech}, the scripted development model)"
                if offline
                else "refused (TALKTURO_OFFLINE_PROVIDERS is off)"
            ),
        ]
        lines += [
            "",
            "  Try it:",
            f'    curl -H "Authorization: Bearer {shown_key}" {api}/v1/account',
            "",
            "  For the talkturo commands in another terminal, paste:",
            f"    export TALKTURO_API_URL={api} TALKTURO_API_KEY={shown_key}",
            f"    export TALKTURO_SIMULATOR_URL={sim.url} TWILIO_ACCOUNT_SID={sim.account_sid} "
            f"TWILIO_AUTH_TOKEN={sim.auth_token}",
            "",
            *self._data_lines(),
            "  Press Ctrl-C to stop.",
            "",
        ]
        if self.options.host not in LOOPBACK:
            lines.insert(
                1,
                f"WARNING: the API listens on {self.options.host}, not only on loopback: anyone "
                "who can reach this machine can use it.",
            )
        return "\n".join(lines)

    def _data_lines(self) -> list[str]:
        data = self.data
        restored = data.restored
        if restored.anything:
            numbers = len((restored.parts.get("carrier") or {}).get("numbers", []))
            stripe_objects = (restored.parts.get("stripe") or {}).get("objects") or {}
            payments = len(stripe_objects.get("payment_intent") or {})
            what = (
                f"restored: {restored.items} items, {restored.objects} objects, "
                f"{restored.messages} messages, {numbers} carrier numbers, "
                f"{payments} Stripe payments (saved {restored.saved_at})"
            )
        else:
            what = "started empty (--fresh)" if data.fresh else "nothing saved yet: started empty"
        return [
            f"  Data           {data.folder.path}",
            f"                 {what}",
            f"                 saved every {data.interval:g} s when something changed, and on "
            "stop (--fresh starts empty)",
            "",
        ]


def serve(platform: LocalPlatform, on_ready: Callable[[str], None]) -> int:
    """Run until SIGINT/SIGTERM (exit 0) or until a component dies (exit 1)."""
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            platform.start()
        except BaseException:
            platform.stop()
            raise
        try:
            if not stop.is_set():
                on_ready(platform.banner())
            while not stop.wait(timeout=0.5):
                dead = platform.supervisor.dead()
                if dead:
                    logger.error("%s stopped unexpectedly; stopping the platform", ", ".join(dead))
                    return 1
            logger.info("stopping…")
            return 0
        finally:
            platform.stop()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # Asked twice: the user does not want to wait for a clean stop.
            os._exit(1)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _forget_cached_settings() -> None:
    """Settings and clients are cached per process; they must see the new environment.

    Only modules already imported can hold anything; the others are left unimported, so that
    nothing is reset needlessly.
    """
    import sys

    config = sys.modules.get("talkturo.config")
    if config is not None:
        config.get_settings.cache_clear()
    deps = sys.modules.get("talkturo.api.deps")
    if deps is not None:
        deps._admin_secret.cache_clear()
    carrier = sys.modules.get("talkturo.carrier.factory")
    if carrier is not None:
        carrier.reset()
    gateway = sys.modules.get("talkturo.billing.factory")
    if gateway is not None:
        gateway.reset()
    aws = sys.modules.get("talkturo.aws")
    if aws is not None:
        aws.client.cache_clear()
    table = sys.modules.get("talkturo.store.table")
    if table is not None:
        table.reset()
