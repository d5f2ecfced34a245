"""Feeds SQS messages to the functions template.yaml subscribes to them, as Lambda's poller does.

For every SQS event of every function in the stack, one thread long-polls the queue and calls the
very handler Lambda would run (`functions/<dir>/app.py`, loaded by path) with a Lambda-shaped
event and context. What happens to the messages afterwards is Lambda's behaviour too:

- the handler returns normally: every message of the batch is deleted;
- the function reports batch item failures (`FunctionResponseTypes: [ReportBatchItemFailures]`)
  and answers `{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`: all the others
  are deleted, the failed ones stay and come back after the queue's visibility timeout;
- the handler raises (or answers a malformed failure list): the whole batch stays.

Messages that keep failing are moved to the dead-letter queue by the queue's own redrive policy,
exactly as on AWS, where the dead-letter worker the template subscribes to it takes them like
any other queue's. A failing handler is logged; the runner itself never stops because of one.

How many batches of one queue are worked on at once is the event source's
`ScalingConfig.MaximumConcurrency` (the cap Lambda's poller honours on AWS): that many threads
poll the queue, each running one batch at a time; an event source without it gets one thread.

Differences from Lambda worth knowing: handlers run in this process (one shared environment, no
isolation between functions) but for the functions named `own_process` (each of their pollers
then has a process of its own, local/lambda_process.py: the contact import's, whose batches are
CPU-bound), a queue without `MaximumConcurrency` is worked one batch at a time (Lambda would
scale out as it fills), and the function's timeout is only reported, not enforced.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from talkturo.local.lambda_process import HandlerFailed, LambdaProcess
from talkturo.local.template import Function, SqsEventSource, Stack

logger = logging.getLogger("local.runner")

Handler = Callable[[dict[str, Any], Any], Any]

# Long enough not to spin, short enough that stopping the platform is quick.
DEFAULT_WAIT_SECONDS = 1
# With a way to end its polls when it stops, a runner waits as long as SQS allows: an idle
# platform then costs one poll per queue every 20 s.
LONG_WAIT_SECONDS = 20


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that handlers and powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


def handler_path(function: Function) -> Path:
    """The file of the function's handler module (`app.handler` -> <code dir>/app.py)."""
    module_name = function.handler.rpartition(".")[0]
    return function.code_dir.joinpath(*module_name.split(".")).with_suffix(".py")


def load_handler(function: Function, instance: int = 0) -> Handler:
    """Import the function's handler module from its code directory, by path, as Lambda does.

    Each `instance` is a module of its own, as each of Lambda's execution environments is: the
    module-level state of a handler (a batch processor, say) is never shared by two batches
    worked on at once."""
    module_name, _, attribute = function.handler.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{function.logical_id}: Handler must be 'module.function'")
    path = handler_path(function)
    if not path.is_file():
        raise FileNotFoundError(f"{function.logical_id}: no handler module at {path}")
    # Each function's `app.py` gets its own module name: several functions share the file name.
    unique_name = f"_talkturo_function_{function.logical_id}_{module_name.replace('.', '_')}"
    if instance:
        unique_name += f"_{instance}"
    spec = importlib.util.spec_from_file_location(unique_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{function.logical_id}: cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    # On Lambda the code directory is on sys.path, so a handler may import its sibling modules.
    code_dir = str(function.code_dir)
    sys.path.insert(0, code_dir)
    sys.modules[unique_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique_name, None)
        raise
    finally:
        sys.path.remove(code_dir)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"{function.logical_id}: {path} has no function {attribute!r}")
    return handler


@dataclass(frozen=True)
class Subscription:
    """One queue feeding one function."""

    function: Function
    source: SqsEventSource
    queue_url: str
    queue_arn: str

    @property
    def label(self) -> str:
        return f"{self.source.queue} -> {self.function.logical_id}"

    @property
    def pollers(self) -> int:
        """Threads polling the queue: its batches worked on at once."""
        return max(1, self.source.max_concurrency or 1)


class SqsRunner:
    """The SQS side of Lambda for every function of `stack`. A platform component."""

    name = "sqs-runner"

    def __init__(
        self,
        stack: Stack,
        *,
        sqs_client: Any = None,
        wait_seconds: int = DEFAULT_WAIT_SECONDS,
        region: str = "us-east-1",
        end_polls: Callable[[], None] | None = None,
        own_process: frozenset[str] = frozenset(),
    ) -> None:
        """`end_polls` answers the runner's waiting long polls at once (the emulator's
        `end_long_polls`); `stop` calls it so as not to wait out `wait_seconds`.
        `own_process`: the logical ids of functions whose batches run in processes of their
        own, one per poller (LambdaProcess)."""
        if sqs_client is None:
            import boto3
            from botocore.config import Config

            # One long poll per queue at once, all on this client: a connection each.
            sqs_client = boto3.client(
                "sqs", region_name=region, config=Config(max_pool_connections=50)
            )
        self._sqs = sqs_client
        self._stack = stack
        self._region = region
        self.wait_seconds = wait_seconds
        self._end_polls = end_polls
        self.subscriptions = _subscriptions(stack)
        self._handlers: dict[tuple[str, int], Handler] = {}
        self.own_process = own_process
        self._processes: dict[tuple[str, int], LambdaProcess] = {}
        self._load_lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ component
    def start(self) -> None:
        self._stopping.clear()
        for subscription in self.subscriptions:
            if not handler_path(subscription.function).is_file():
                logger.warning(
                    "%s: %s does not exist (yet); its messages fail until it does",
                    subscription.label,
                    _rel(handler_path(subscription.function)),
                )
            for poller in range(subscription.pollers):
                name = f"sqs:{subscription.source.queue}"
                thread = threading.Thread(
                    target=self._loop,
                    args=(subscription, poller),
                    name=name if poller == 0 else f"{name}.{poller + 1}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + self.wait_seconds + 2
        for thread in self._threads:
            while self._end_polls is not None and thread.is_alive():
                # Again until it ends: a poll may begin just after the stop was asked for.
                self._end_polls()
                thread.join(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    break
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                # A handler still running: like a Lambda cut off, its messages come back later.
                logger.warning("%s is still busy; leaving it behind", thread.name)
        with self._load_lock:
            processes, self._processes = list(self._processes.values()), {}
        for process in processes:
            process.kill()  # a batch still running comes back, as above
            process.close()
        self._threads.clear()

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    # ------------------------------------------------------------------ polling
    def poll_once(self, wait_seconds: int = 0) -> int:
        """Poll every subscribed queue once and run the handlers; how many messages were handed.

        The loop of each runner thread is this, repeated; tests call it to go step by step.
        """
        return sum(self.deliver(subscription, wait_seconds) for subscription in self.subscriptions)

    def deliver(self, subscription: Subscription, wait_seconds: int, poller: int = 0) -> int:
        """Receive one batch from the queue, run the handler on it, delete what succeeded
        (`poller`: which of the queue's threads, each with its own copy of the handler)."""
        answer = self._sqs.receive_message(
            QueueUrl=subscription.queue_url,
            MaxNumberOfMessages=max(1, min(subscription.source.batch_size, 10)),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        if not messages:
            return 0
        failed = self._invoke(subscription, messages, poller)
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        if succeeded:
            self._delete(subscription, succeeded)
        if failed:
            logger.warning(
                "%s: %d of %d messages failed; they return after the visibility timeout",
                subscription.label,
                len(failed),
                len(messages),
            )
        return len(messages)

    def _loop(self, subscription: Subscription, poller: int) -> None:
        while not self._stopping.is_set():
            try:
                self.deliver(subscription, self.wait_seconds, poller)
            except Exception:  # the runner outlives any failure
                if self._stopping.is_set():
                    return
                logger.exception("%s: polling failed; trying again", subscription.label)
                self._stopping.wait(1.0)

    def _invoke(
        self, subscription: Subscription, messages: list[dict[str, Any]], poller: int = 0
    ) -> set[str]:
        """Run the handler; the message ids that failed (all of them when the handler fails)."""
        everything = {m["MessageId"] for m in messages}
        function = subscription.function
        event = {"Records": [self._record(subscription, m) for m in messages]}
        context = LambdaContext(
            function_name=f"{self._stack.name}-{function.logical_id}",
            invoked_function_arn=self._function_arn(subscription),
            memory_limit_in_mb=function.memory_mb,
            timeout_seconds=function.timeout_seconds,
        )
        started = time.monotonic()
        try:
            if function.logical_id in self.own_process:
                result = self._process(subscription, poller).invoke(event, context)
            else:
                result = self._handler(function, poller)(event, context)
        except HandlerFailed as died:  # its traceback is the one of the other process
            logger.error(
                "%s: the handler failed on %d message(s); they stay on the queue\n%s",
                subscription.label,
                len(messages),
                died,
            )
            return everything
        except (Exception, SystemExit):
            logger.exception(
                "%s: the handler failed on %d message(s); they stay on the queue",
                subscription.label,
                len(messages),
            )
            return everything
        finally:
            took = time.monotonic() - started
            if took > function.timeout_seconds:
                logger.warning(
                    "%s: the handler ran %.1f s, over the function's %d s timeout "
                    "(on AWS it would have been stopped)",
                    subscription.label,
                    took,
                    function.timeout_seconds,
                )
        if not subscription.source.report_batch_item_failures:
            return set()
        failed = _batch_item_failures(result, everything)
        if failed is None:
            logger.error(
                "%s: the handler answered an invalid batchItemFailures (%r); "
                "the whole batch counts as failed, as on Lambda",
                subscription.label,
                result,
            )
            return everything
        return failed

    def _handler(self, function: Function, poller: int = 0) -> Handler:
        with self._load_lock:
            handler = self._handlers.get((function.logical_id, poller))
            if handler is None:
                # Loaded on first use, and again after a failed load (the file may appear later).
                handler = load_handler(function, poller)
                self._handlers[(function.logical_id, poller)] = handler
            return handler

    def _process(self, subscription: Subscription, poller: int) -> LambdaProcess:
        """The poller's own execution environment (its process starts on its first batch)."""
        function = subscription.function
        with self._load_lock:
            process = self._processes.get((function.logical_id, poller))
            if process is None:
                name = threading.current_thread().name
                process = self._processes[(function.logical_id, poller)] = LambdaProcess(
                    function, name
                )
            return process

    def _delete(self, subscription: Subscription, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            answer = self._sqs.delete_message_batch(
                QueueUrl=subscription.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            for failure in answer.get("Failed", []):
                logger.error("%s: could not delete a message: %s", subscription.label, failure)

    def _record(self, subscription: Subscription, message: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _message_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": subscription.queue_arn,
            "awsRegion": self._region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def _function_arn(self, subscription: Subscription) -> str:
        account = subscription.queue_arn.split(":")[4] if subscription.queue_arn else "000000000000"
        name = f"{self._stack.name}-{subscription.function.logical_id}"
        return f"arn:aws:lambda:{self._region}:{account}:function:{name}"


def _subscriptions(stack: Stack) -> list[Subscription]:
    found: list[Subscription] = []
    for function in stack.functions.values():
        events = list(function.sqs_events)
        described = {event.queue for event in events}
        events += [SqsEventSource(queue=q) for q in function.sqs_sources if q not in described]
        for event in events:
            found.append(
                Subscription(
                    function=function,
                    source=event,
                    queue_url=stack.physical[event.queue],
                    queue_arn=stack.arns.get(event.queue, ""),
                )
            )
    return found


def _batch_item_failures(result: Any, batch: set[str]) -> set[str] | None:
    """The failed message ids of a partial-batch answer; None when the answer is malformed.

    As documented for Lambda: no answer, `{}` or an empty/null list mean complete success; an
    entry without a valid `itemIdentifier` of this batch makes the whole batch fail.
    """
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in batch:
            return None
        failed.add(identifier)
    return failed


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """boto3's MessageAttributeValue in the shape Lambda's SQS event uses."""

    def b64(data: bytes | str) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return base64.b64encode(raw).decode()

    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": b64(binary) if binary is not None else None,
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues", [])],
        "dataType": value.get("DataType", "String"),
    }


def describe(runner: SqsRunner) -> list[str]:
    """One line per subscription, for the banner."""
    return [
        f"{s.label} (batch {s.source.batch_size}"
        + (f", {s.pollers} at once" if s.pollers > 1 else "")
        + (", partial failures" if s.source.report_batch_item_failures else "")
        + (", a process each" if s.function.logical_id in runner.own_process else "")
        + ")"
        + ("" if handler_path(s.function).is_file() else f"  [no {_rel(handler_path(s.function))}]")
        for s in runner.subscriptions
    ]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
