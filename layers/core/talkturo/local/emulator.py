"""An in-process AWS emulator (moto's server) on a loopback port.

Requests are applied one at a time: DynamoDB applies each write and each transaction atomically,
and moto's in-memory backends only match that when nothing interleaves inside them.

SQS long polls (ReceiveMessage with WaitTimeSeconds > 0) are the exception: moto waits for
messages inside the request, which under that one lock would stall every other call for the
whole wait (and a message sent meanwhile could never arrive). So the emulator turns a long poll
into short polls, each applied under the lock, and waits between them without holding it. A
waiting poll is woken only when its own queue may have a message: a request naming that queue
that can bring one (SendMessage, SendMessageBatch, ChangeMessageVisibility…), or a change in the
queue's message count (a message moved to it as a dead letter); otherwise it sleeps until its
deadline or until the first delayed or in-flight message of its queue can be received. To the
client it is the same long poll.

DynamoDB queries read one partition instead of the whole table: see `emulator_dynamodb`.

Step Functions executions run (moto's ASL interpreter, switched on in `start`): each in a thread
of its own, calling back into this emulator for its tasks (an SQS SendMessage) as a client
would. Step Functions requests do not take the lock above (they touch none of the data it
guards), so nothing a workflow does while its own request runs can wait on it. A Wait state
waits in real time; a `Timestamp` wait lasts here until that moment of the UTC clock (moto
compares the UTC timestamp with the machine's local clock, so a wait could end hours late, or
at once, and rounds the wait down to whole seconds).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
from moto.core import responses as moto_responses
from moto.core.utils import method_names_from_class as moto_method_names
from moto.core.utils import unix_time_millis
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sqs.models import sqs_backends
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp
from moto.stepfunctions.parser.asl.utils import boto_client as workflow_clients
from werkzeug.serving import ThreadedWSGIServer

from talkturo.local import emulator_dynamodb

# Credentials the emulator accepts; never real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _TablesNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend.

    moto makes its transactions atomic by deep-copying every table a transaction touches and
    putting the copy back on failure, so each transaction costs time in proportion to the whole
    table (a 450-row import took minutes). Here tables are passed through uncopied, and
    `_transact_with_item_rollback` restores just the items the transaction names instead.
    """

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _transact_with_item_rollback(original: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved = []
        for entry in transact_items:
            operation: dict[str, Any] = next(iter(entry.values()), {})
            table = backend.tables.get(operation.get("TableName"))
            key = operation.get("Key") or operation.get("Item")
            if table is None or not key or table.hash_key_attr not in key:
                continue
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in key:
                    continue
                range_value = DynamoType(key[table.range_key_attr])
            before = table.get_item(hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(before)))
        try:
            return original(backend, transact_items)
        except Exception:
            # Put back what the transaction had changed before it failed, last change first.
            for table, hash_value, range_value, before in reversed(saved):
                table.delete_item(hash_value, range_value)
                if before is not None:
                    table.put_item(before.to_json()["Attributes"], overwrite=True)
            raise

    return transact_write_items


def _make_transactions_cheap() -> None:
    if getattr(DynamoDBBackend.transact_write_items, "_item_rollback", False):
        return
    dynamodb_models.copy = _TablesNotCopied()  # type: ignore[assignment]
    patched = _transact_with_item_rollback(DynamoDBBackend.transact_write_items)
    patched._item_rollback = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = patched  # type: ignore[method-assign]


def _method_names_once() -> None:
    """moto finds a request's action among its handler class's methods by listing them all
    (`inspect.getmembers`) on every request; the list of a class is listed once here."""
    if getattr(moto_responses.method_names_from_class, "_once", False):
        return
    listed = functools.cache(lambda handler_class: frozenset(moto_method_names(handler_class)))

    def method_names(handler_class: object) -> frozenset[str]:
        names: frozenset[str] = listed(handler_class)
        return names

    method_names._once = True  # type: ignore[attr-defined]
    moto_responses.method_names_from_class = method_names  # type: ignore[assignment]


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which service each host is (moto works it out anew for
    every request, walking the list of its modules: about a millisecond each time)."""

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


def _wait_until_in_utc(self: timestamp.Timestamp, env: Any) -> None:
    """moto's Timestamp wait, until that very moment of the UTC clock (moto reckons it against
    the local clock, in whole seconds)."""
    self.string.eval(env=env)
    text: str = env.stack.pop()
    moment = self._from_timestamp_string(timestamp=text)
    if moment is None:
        raise FailureEventException(self._create_failure_event(env, text))
    deadline = moment.replace(tzinfo=UTC).timestamp()
    # The event pulses when the execution stops (or ends otherwise): the wait is over then.
    while env.is_running() and (left := deadline - time.time()) > 0:
        env.program_state_event.wait(left)


class _SharedClients:
    """Stands in for `boto3` in moto's interpreter: one client per service, region and endpoint,
    shared by every execution (boto3's clients are thread-safe). moto makes a new client for
    every task, about 10 ms of CPU each: a burst of wakes due at the same second spent seconds
    making clients before the first job was sent."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def client(self, **options: Any) -> Any:
        key = tuple(options.get(k) for k in ("service_name", "region_name", "endpoint_url"))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = boto3.client(**options)
            return self._clients[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(boto3, name)


# The ports of the emulators running in this process, latest last. moto's interpreter has one
# global port to call back on: when a later emulator stops, executions go back to the one before
# it instead of to a closed port.
_workflow_ports: list[int] = []


def _run_workflows(port: int) -> None:
    """Executions of state machines run, and call back into the emulator on `port`."""
    moto_api_backend.set_config({"stepfunctions": {"execute_state_machine": True}})
    _workflow_ports.append(port)
    # The interpreter's clients go to localhost:<moto_server_port()>.
    workflow_clients.moto_server_port = lambda: str(_workflow_ports[-1])
    if not isinstance(workflow_clients.boto3, _SharedClients):
        workflow_clients.boto3 = _SharedClients()
    timestamp.Timestamp._eval_body = _wait_until_in_utc  # type: ignore[method-assign,assignment]


def _is_workflow_request(environ: dict[str, Any]) -> bool:
    return str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("AWSStepFunctions.")


class _Serialised:
    def __init__(self, app: WsgiApp, workflows: WsgiApp) -> None:
        self._app = app
        # Every request runs holding it, but Step Functions ones (`workflows`, their own lock).
        self._lock = threading.Lock()
        self._workflows = workflows
        self._workflow_lock = threading.Lock()
        # The long polls waiting, by queue: each sleeps on its queue's condition (same lock)...
        self._waiting: dict[_QueueRef, threading.Condition] = {}
        self._waiters: Counter[_QueueRef] = Counter()
        # ...and the queue's message count when they last looked.
        self._seen: dict[_QueueRef, int] = {}
        # Counts `end_long_polls` calls: a poll that sees it change answers at once.
        self._endings = 0

    def end_long_polls(self) -> None:
        with self._lock:
            self._endings += 1
            for waiting in self._waiting.values():
                waiting.notify_all()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if _is_workflow_request(environ):
            # Not counted as a change either: a snapshot keeps no executions.
            with self._workflow_lock:
                return list(self._workflows(environ, start_response))
        request = _sqs_request(environ)
        long_poll = _long_poll(request) if request is not None else None
        if request is not None and long_poll is not None:
            return self._long_poll(environ, start_response, request.queue, *long_poll)
        with self._lock:
            # The body is produced inside the lock too: moto builds it while iterating.
            body = list(self._app(environ, start_response))
            self._wake(request)
        return body

    def _wake(self, request: _SqsRequest | None) -> None:
        """Wake the long polls of each queue that may have a message now (lock held).

        That is a queue this request named (a SendMessage, a ChangeMessageVisibility…) and one
        whose message count changed (a message moved to a dead-letter queue on a receive). A
        send wakes one poll per message it brought, as many as could receive one (several
        workers polling one queue would otherwise all look for each message, and all but one
        find nothing); anything else wakes them all.
        """
        named = request.queue if request is not None and not request.reads_only else None
        brought = _messages_brought(request) if named is not None else None
        for queue, waiting in self._waiting.items():
            count = _message_count(queue)
            if queue == named and brought is not None:
                self._seen[queue] = count
                waiting.notify(brought)
            elif queue == named or count != self._seen.get(queue):
                self._seen[queue] = count
                waiting.notify_all()

    def _long_poll(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        queue: _QueueRef | None,
        wait_seconds: float,
        short_poll: bytes,
    ) -> Any:
        deadline = time.monotonic() + wait_seconds
        answer: list[Any] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            answer[:] = [status, headers, exc_info]
            return lambda _data: None

        with self._lock:
            endings = self._endings
            while True:
                attempt = {
                    **environ,
                    "wsgi.input": io.BytesIO(short_poll),
                    "CONTENT_LENGTH": str(len(short_poll)),
                }
                body = list(self._app(attempt, capture))
                # A receive may move messages on (to a dead-letter queue): others may wake.
                self._wake(None)
                remaining = deadline - time.monotonic()
                if (
                    remaining <= 0
                    or endings != self._endings
                    or queue is None
                    or not str(answer[0]).startswith("200")
                    or _has_messages(b"".join(body))
                ):
                    start_response(*answer)
                    return body
                # Sleeps without the lock (other requests go on) until a request may have
                # brought this queue a message, a message of its own becomes visible, or the
                # poll ends; never polling in between.
                waiting = self._waiting.setdefault(queue, threading.Condition(self._lock))
                self._seen[queue] = _message_count(queue)
                self._waiters[queue] += 1
                try:
                    waiting.wait(timeout=min(remaining, _until_visible(queue)))
                finally:
                    self._waiters[queue] -= 1
                    if not self._waiters[queue]:
                        del self._waiters[queue], self._waiting[queue], self._seen[queue]


# Requests that change nothing a snapshot keeps (local/persistence.py). A ReceiveMessage only
# hides messages for a while, and a snapshot keeps in-flight messages as visible ones anyway.
_UNCHANGING_ACTIONS = frozenset(
    {
        "BatchGetItem",
        "DescribeTable",
        "DescribeTimeToLive",
        "GetItem",
        "ListTables",
        "Query",
        "Scan",
        "TransactGetItems",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListQueues",
        "ReceiveMessage",
    }
)


class _QueueRef(NamedTuple):
    """A queue as moto keeps it: account, region and name."""

    account: str
    region: str
    name: str


class _SqsRequest(NamedTuple):
    action: str
    queue: _QueueRef | None
    fields: dict[str, Any]
    # The form fields in their order (query protocol); None for a JSON request.
    form: list[tuple[str, str]] | None

    @property
    def reads_only(self) -> bool:
        return self.action in _BRINGS_NO_MESSAGE


def _messages_brought(request: _SqsRequest | None) -> int | None:
    """How many messages a send put on its queue; None when not a send (or not known)."""
    if request is None:
        return None
    if request.action == "SendMessage":
        return 1
    if request.action == "SendMessageBatch":
        entries = request.fields.get("Entries")
        if isinstance(entries, list) and entries:
            return len(entries)
    return None


# Actions that never bring a queue a message (a poll needs no waking for them).
_BRINGS_NO_MESSAGE = frozenset(
    {
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "GetQueueUrl",
        "GetQueueAttributes",
        "ListQueues",
        "ListQueueTags",
        "ListDeadLetterSourceQueues",
    }
)


class _Counted:
    """Counts the requests that may have changed the emulator's data, and lets a snapshot hold
    every request off while it reads the backends (so it sees one moment, not a mix)."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self.lock = threading.Lock()
        self.changes = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self.lock:
            body = list(self._app(environ, start_response))
            if not _reads_only(environ):
                self.changes += 1
        return body


def _reads_only(environ: dict[str, Any]) -> bool:
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return True  # S3 reads, health checks
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    return target.rpartition(".")[2] in _UNCHANGING_ACTIONS


def _sqs_request(environ: dict[str, Any]) -> _SqsRequest | None:
    """The SQS action of `environ` and the queue it names (its body read and kept readable)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    content_type = environ.get("CONTENT_TYPE", "")
    is_json = target.startswith("AmazonSQS.")
    is_query = not target and content_type.startswith("application/x-www-form-urlencoded")
    if not (is_json or is_query):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw: bytes = environ["wsgi.input"].read(length) if length else b""
    # The body is consumed: whatever happens next reads this copy.
    environ["wsgi.input"] = io.BytesIO(raw)
    form = None
    try:
        if is_json:
            fields = json.loads(raw or b"{}")
            action = target.removeprefix("AmazonSQS.")
        else:
            form = parse_qsl(raw.decode(), keep_blank_values=True)
            fields = dict(form)
            action = fields.get("Action", "")
    except (ValueError, TypeError, AttributeError):
        return None  # malformed: let moto answer it
    if not isinstance(fields, dict):
        return None
    return _SqsRequest(action, _queue_named(fields.get("QueueUrl"), environ), fields, form)


def _queue_named(url: Any, environ: dict[str, Any]) -> _QueueRef | None:
    if not isinstance(url, str):
        return None
    # moto's queue URLs end in /<account>/<name>; the region is the signature's.
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) != 2:
        return None
    scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return _QueueRef(parts[0], scope.group(1) if scope else "us-east-1", parts[1])


def _long_poll(request: _SqsRequest) -> tuple[float, bytes] | None:
    """(wait, the same request as a short poll) when `request` is an SQS long poll."""
    if request.action != "ReceiveMessage":
        return None
    try:
        wait = float(request.fields.get("WaitTimeSeconds") or 0)
    except (ValueError, TypeError):
        return None  # let moto answer it
    # Without WaitTimeSeconds moto would use the queue's own default wait; none of our queues
    # sets one, so such a request simply goes through as it is.
    if not 0 < wait <= 20:
        return None
    if request.form is None:
        short = json.dumps({**request.fields, "WaitTimeSeconds": 0}).encode()
    else:
        short = urlencode(
            [(k, "0" if k == "WaitTimeSeconds" else v) for k, v in request.form]
        ).encode()
    return wait, short


def _moto_queue(queue: _QueueRef) -> Any:
    # dict.get: moto's own lookups would create a backend for an account or region never used.
    backends = dict.get(sqs_backends, queue.account)
    backend = dict.get(backends, queue.region) if backends is not None else None
    return backend.queues.get(queue.name) if backend is not None else None


def _message_count(queue: _QueueRef) -> int:
    found = _moto_queue(queue)
    return -1 if found is None else len(found._messages)


def _until_visible(queue: _QueueRef) -> float:
    """Seconds until the first delayed or in-flight message of `queue` can be received."""
    found = _moto_queue(queue)
    now_ms = unix_time_millis()
    later = [
        moment
        for message in (found._messages if found is not None else ())
        if (moment := max(message.visible_at, message.delayed_until)) > now_ms
    ]
    # moto counts a message visible only once its moment has passed: a millisecond more.
    return (min(later) - now_ms + 1) / 1000 if later else float("inf")


def _has_messages(body: bytes) -> bool:
    try:
        answer = json.loads(body)
    except ValueError:
        return b"<Message>" in body  # the XML (query protocol) answer
    return isinstance(answer, dict) and bool(answer.get("Messages"))


class _KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, keeping each connection open for the client's next request.

    werkzeug's development server closes every connection after its answer, so each AWS call
    opened a new connection (and the server a new thread for it). Here the body of a request is
    read whole before the app sees it (nothing of it can be taken for the next request line),
    and the answer goes out with its length, headers and body in one write, on a socket without
    Nagle's algorithm (an answer on a kept-alive connection must not wait for a delayed ACK).
    """

    protocol_version = "HTTP/1.1"
    server: _KeepAliveServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's reader decodes it
            body = environ["wsgi.input"].read()
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if len(body) < length:
                self.close_connection = True  # the client went away mid-request
                return
        environ["wsgi.input"] = io.BytesIO(body)
        answer: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            if exc_info is not None and answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer[:] = [status, list(headers)]
            return chunks.append

        try:
            iterable = self.server.app(environ, start_response)
            try:
                chunks.extend(iterable)
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        except Exception:  # answered as werkzeug does: 500, logged
            logging.getLogger("werkzeug").exception("Error on request %s", self.path)
            answer = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            chunks = [b"Internal Server Error"]
            self.close_connection = True
        self._answer(str(answer[0]), answer[1], b"".join(chunks))

    def _answer(self, status: str, headers: list[tuple[str, str]], data: bytes) -> None:
        code = int(status.split(None, 1)[0])
        # A HEAD answer says the length of what a GET would give (S3's head_object).
        bodiless = self.command == "HEAD" or 100 <= code < 200 or code in (204, 304)
        lines = [f"{self.protocol_version} {status}"]
        names = set()
        for name, value in headers:
            lower = name.lower()
            if lower in ("connection", "keep-alive", "transfer-encoding") or (
                lower == "content-length" and not bodiless
            ):
                continue
            names.add(lower)
            lines.append(f"{name}: {value}")
        if "server" not in names:
            lines.append(f"Server: {self.version_string()}")
        if "date" not in names:
            lines.append(f"Date: {self.date_time_string()}")
        if not bodiless:
            lines.append(f"Content-Length: {len(data)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if bodiless else head + data)
        self.log_request(code, len(data))


class _KeepAliveServer(ThreadedWSGIServer):
    """A thread per connection (not per request); `stop` closes the connections still open."""

    def __init__(self, host: str, port: int, app: WsgiApp) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(host, port, app, handler=_KeepAliveHandler)

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Emulator:
    """`with Emulator() as aws:` serves moto on 127.0.0.1 (a free port unless given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: _KeepAliveServer | None = None
        self._app: _Serialised | None = None
        self._thread: threading.Thread | None = None
        self._counted: _Counted | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def changes(self) -> int:
        """How many requests so far may have changed data (a snapshot is due when it moved)."""
        return self._counted.changes if self._counted is not None else 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No request runs inside this block: moto's backends can be read (or filled) directly."""
        assert self._counted is not None, "start() first"
        with self._counted.lock:
            yield

    def end_long_polls(self) -> None:
        """Answer every waiting SQS long poll now (empty), as when its wait is over.

        What lets a poller that waits long (and so costs nothing while idle) stop at once.
        """
        if self._app is not None:
            self._app.end_long_polls()

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment to use this emulator through boto3/pynamodb."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> Emulator:
        # DynamoDB has allowed 100 items per transaction since 2022; moto still says 25.
        dynamodb_responses.TRANSACTION_MAX_ITEMS = 100
        _make_transactions_cheap()
        _method_names_once()
        emulator_dynamodb.install()
        # One log line per AWS call drowns everything else out.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        dispatcher = _Dispatcher(create_backend_app)
        self._counted = _Counted(dispatcher)
        self._app = _Serialised(self._counted, workflows=dispatcher)
        self._server = _KeepAliveServer(self._host, self._port, self._app)
        _run_workflows(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            port = self._server.server_address[1]
            if port in _workflow_ports:
                _workflow_ports.remove(port)
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
