"""The local platform's data across restarts: snapshots of the AWS emulator in a data folder.

What a snapshot keeps: every item of every DynamoDB table (as DynamoDB JSON), every S3 object
(its bytes as a file, with its content type and metadata), and every SQS message not yet
deleted (body and attributes; one in flight comes back visible, a delay keeps what is left of
it, receive counts start again), plus small named parts the platform adds (the carrier
simulator's numbers, the dev account). Nothing of moto's own classes is written, so a snapshot
survives an upgrade of moto or of the libraries; the file carries a format version.

    <data folder>/state.json      the snapshot (version, tables, queues, object index, parts)
    <data folder>/objects/<name>  the objects' bytes, one file each, named by what they hold

A snapshot is taken every SAVE_INTERVAL_SECONDS when anything changed, and on stop; when one
took long (a large data set written while an import runs), the next waits SAVE_SHARE times as
long as it took, so that saving never takes more than about a tenth of the platform's time
from the requests it shares the process with. Every file
is written to a temporary name, flushed to disk and renamed over the old one: a process killed
during a save leaves the previous snapshot whole. At start the snapshot fills the tables,
buckets and queues that template.yaml's resources created, before anything else runs.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from talkturo.local.emulator import FAKE_CREDENTIALS, Emulator
from talkturo.local.emulator_dynamodb import take_changes

logger = logging.getLogger("local.data")

FORMAT = "talkturo-local-data"
VERSION = 1
SAVE_INTERVAL_SECONDS = 5.0
# A save that took t seconds is followed by at least SAVE_SHARE * t seconds without one.
SAVE_SHARE = 10.0
DEFAULT_DATA_DIR = ".talkturo"
STATE_FILE = "state.json"
OBJECTS_DIR = "objects"
LOCK_FILE = "lock"
REGION = FAKE_CREDENTIALS["AWS_DEFAULT_REGION"]
# SQS refuses longer delays; a message that had more left waits this long again.
MAX_DELAY_SECONDS = 900
# The object headers S3 gives back as they were put (besides x-amz-meta-*), by put_object name.
_OBJECT_HEADERS = {
    "content-type": "ContentType",
    "content-disposition": "ContentDisposition",
    "content-encoding": "ContentEncoding",
    "content-language": "ContentLanguage",
    "cache-control": "CacheControl",
}
_USER_METADATA = "x-amz-meta-"

Part = Callable[[], Any]


class DataError(Exception):
    """The data folder cannot be used (unreadable snapshot, in use by another platform…)."""


# What the user can do about a snapshot that cannot be restored.
_START_OVER = (
    "start with --fresh to begin empty (the saved data is deleted), or choose another folder "
    "with --data-dir"
)


# ---------------------------------------------------------------------------------- files
def _json(state: dict[str, Any]) -> bytes:
    """The snapshot as compact JSON. orjson: the save holds the emulator's requests off while
    it writes (`json.dumps` keeps the interpreter's lock throughout), and a customer's size
    (10,000 contacts, 100,000 items: 0.49 s of `json.dumps`, 0.05 s of orjson)."""
    try:
        return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # something orjson does not write (an integer beyond 64 bits, say)
        return json.dumps(state, separators=(",", ":")).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` entirely or keeps what it held: temp file, fsync, rename, fsync dir."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    temporary.chmod(0o600)
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass
class Restored:
    """What a snapshot put back at start (the banner shows it)."""

    saved_at: str = ""
    items: int = 0
    objects: int = 0
    messages: int = 0
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def anything(self) -> bool:
        return bool(self.saved_at)


class DataFolder:
    """The files of one data folder. `lock()` keeps a second platform out while one runs."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().absolute()
        self._lock: IO[bytes] | None = None

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def objects(self) -> Path:
        return self.path / OBJECTS_DIR

    def lock(self) -> None:
        # Only this user may read it: it holds the dev account's key and the simulator's token.
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.objects.mkdir(exist_ok=True, mode=0o700)
        stream = (self.path / LOCK_FILE).open("wb")
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.close()
            raise DataError(
                f"the data folder {self.path} is in use by another `talkturo dev`; stop it, "
                "or give this one its own folder with --data-dir"
            ) from None
        self._lock = stream

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing releases the lock
            self._lock = None

    def wipe(self) -> None:
        """Forget the saved data (only the files a snapshot writes: the folder may hold more)."""
        self.state_file.unlink(missing_ok=True)
        if self.objects.is_dir():
            for blob in self.objects.iterdir():
                blob.unlink()

    def read(self) -> dict[str, Any] | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = orjson.loads(raw)
        except ValueError as exc:  # orjson's JSONDecodeError is one
            raise DataError(
                f"{self.state_file} is not a readable snapshot ({exc}); {_START_OVER}"
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise DataError(
                f"{self.state_file} is not a snapshot of the local platform; {_START_OVER}"
            )
        if state.get("version") != VERSION:
            raise DataError(
                f"{self.state_file} has format version {state.get('version')!r}; this version "
                f"of talkturo reads version {VERSION}; {_START_OVER}"
            )
        return state

    def write(self, state: dict[str, Any], blobs: dict[str, bytes]) -> None:
        """The objects first, then the snapshot naming them (the moment it is saved), then the
        objects no snapshot names any more."""
        for name, data in blobs.items():
            write_atomically(self.objects / name, data)
        write_atomically(self.state_file, _json(state))
        named = {o["blob"] for objects in state["buckets"].values() for o in objects}
        for blob in self.objects.iterdir():
            if blob.name not in named:
                blob.unlink(missing_ok=True)

    def has_blob(self, name: str) -> bool:
        return (self.objects / name).is_file()

    def blob(self, name: str) -> bytes:
        return (self.objects / name).read_bytes()


# ---------------------------------------------------------------------------------- capture
def _backend(service: str) -> Any:
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    region = "aws" if service == "s3" else REGION  # S3's backends are per partition
    return get_backend(service)[DEFAULT_ACCOUNT_ID][region]  # type: ignore[call-overload]


Listing = dict[str, list[dict[str, Any]]]


def _blob_name(bucket: str, key: str, etag: str, modified: str) -> str:
    # Named by the object's identity and version, so an unchanged object is never read again.
    return hashlib.sha256("\0".join((bucket, key, etag, modified)).encode()).hexdigest()


def _ours(name: str, prefix: str) -> bool:
    return name.lower().startswith(prefix.lower())  # bucket names are lower case


def _exported(value: dict[str, Any]) -> dict[str, Any]:
    """A typed value ({"S": …}, {"M": {…}} …) as DynamoDB JSON on the wire: binary as base64."""
    (kind, inner), *_ = value.items()

    def b64(raw: bytes | str) -> str:
        return base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw

    if kind == "B":
        return {"B": b64(inner)}
    if kind == "BS":
        return {"BS": [b64(v) for v in inner]}
    if kind == "M":
        return {"M": {k: _exported(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_exported(v) for v in inner]}
    return {kind: inner}


def _imported(value: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON (binary as base64) as boto3's client takes it (binary as bytes)."""
    (kind, inner), *_ = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    if kind == "M":
        return {"M": {k: _imported(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_imported(v) for v in inner]}
    return {kind: inner}


# Value kinds whose moto value is what DynamoDB JSON holds (a string, a number's text, a bool).
_SCALARS = frozenset({"S", "N", "BOOL", "NULL"})
_STRING_SETS = frozenset({"SS", "NS"})


def _row(item: Any) -> dict[str, Any]:
    """An item as DynamoDB JSON. A snapshot reads every item written since the last one (a
    large import: hundreds of thousands), so plain values, nearly all of them, are read
    straight off moto's values; any other kind takes moto's `to_json` and `_exported`."""
    row: dict[str, Any] = {}
    for name, value in item.attrs.items():
        kind = value.type
        if kind in _SCALARS:
            row[name] = {kind: value.value}
        elif kind in _STRING_SETS:
            row[name] = {kind: list(value.value)}
        else:
            return {k: _exported(v) for k, v in item.to_json()["Attributes"].items()}
    return row


class TableCapture:
    """The tables' items as last saved, kept between snapshots.

    A snapshot holds every request off while it reads; reading every item each time would hold
    them for seconds once a table has a customer's size (150,000 items: about 14 s). So only
    the items written since the last snapshot are read again (the emulator notes their keys:
    `emulator_dynamodb.take_changes`); a table seen for the first time, or whose items were
    replaced, is read whole.
    """

    def __init__(self) -> None:
        self._rows: dict[str, dict[Any, dict[str, Any]]] = {}

    def capture(self, prefix: str) -> Listing:
        tables = {
            name: table
            for name, table in _backend("dynamodb").tables.items()
            if _ours(name, prefix)
        }
        for gone in set(self._rows) - set(tables):
            del self._rows[gone]
        for name, table in tables.items():
            changed = take_changes(table)
            rows = self._rows.get(name)
            if changed is None or rows is None:
                self._rows[name] = {
                    (item.hash_key, item.range_key): _row(item) for item in table.all_items()
                }
                continue
            stored = table.items
            for hash_key, range_key in changed:
                # Straight from moto's mapping: one hash table read rather than get_item's checks.
                item = stored.get(hash_key)
                if range_key is not None and item is not None:
                    item = item.get(range_key)  # a hash key's items by range key
                if item is None:
                    rows.pop((hash_key, range_key), None)
                else:
                    rows[(hash_key, range_key)] = _row(item)
        return {name: list(rows.values()) for name, rows in self._rows.items()}

    def seed(self, prefix: str, saved: Listing) -> None:
        """Start from what a restore has just put back (so the first snapshot after a restart
        does not read every item again). Call it before anything else writes."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        for name, table in _backend("dynamodb").tables.items():
            if not _ours(name, prefix) or name not in saved:
                continue
            take_changes(table)  # the keys written from now on are noted

            def key(item: dict[str, Any], attribute: str | None) -> Any:
                return DynamoType(_imported(item[attribute])) if attribute else None

            self._rows[name] = {
                (key(item, table.hash_key_attr), key(item, table.range_key_attr)): item
                for item in saved[name]
            }


def _capture_buckets(folder: DataFolder, prefix: str) -> tuple[Listing, dict[str, bytes]]:
    buckets: Listing = {}
    blobs: dict[str, bytes] = {}
    for name, bucket in _backend("s3").buckets.items():
        if not _ours(name, prefix):
            continue
        objects = buckets.setdefault(name, [])
        for key_name, key in bucket.keys.items():
            headers = {k.lower(): str(v) for k, v in dict(key.metadata).items()}
            blob = _blob_name(name, key_name, key.etag, key.last_modified.isoformat())
            if not folder.has_blob(blob):
                blobs[blob] = bytes(key.value)
            objects.append(
                {
                    "key": key_name,
                    "blob": blob,
                    "size": key.size,
                    "headers": {h: v for h, v in headers.items() if h in _OBJECT_HEADERS},
                    "metadata": {
                        h[len(_USER_METADATA) :]: v
                        for h, v in headers.items()
                        if h.startswith(_USER_METADATA)
                    },
                }
            )
    return buckets, blobs


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"DataType": value["DataType"]}
    if value.get("StringValue") is not None:
        kept["StringValue"] = value["StringValue"]
    if value.get("BinaryValue") is not None:
        binary = value["BinaryValue"]
        raw = binary if isinstance(binary, bytes) else str(binary).encode()
        kept["BinaryValue"] = base64.b64encode(raw).decode()
    return kept


def _capture_queues(prefix: str) -> Listing:
    now_ms = time.time() * 1000
    queues: Listing = {}
    for name, queue in _backend("sqs").queues.items():
        if not _ours(name, prefix):
            continue
        # Every message not yet deleted, visible or not (moto keeps them in this list).
        messages = []
        for message in queue._messages:
            left = max(0.0, message.delayed_until - now_ms) / 1000
            messages.append(
                {
                    "body": message.body,
                    "attributes": {
                        n: _message_attribute(v) for n, v in message.message_attributes.items()
                    },
                    "delay_seconds": min(MAX_DELAY_SECONDS, math.ceil(left)),
                }
            )
        queues[name] = messages
    return queues


def capture(
    emulator: Emulator, folder: DataFolder, prefix: str, tables: TableCapture | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The data of the resources named `prefix`… at one moment (no request runs meanwhile),
    and the objects' bytes not yet in the folder. `tables`: what the last snapshot read, so
    that only what changed since is read again."""
    with emulator.paused():
        items = (tables or TableCapture()).capture(prefix)
        buckets, blobs = _capture_buckets(folder, prefix)
        queues = _capture_queues(prefix)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": items,
        "buckets": buckets,
        "queues": queues,
        "parts": {},
    }
    return state, blobs


# ---------------------------------------------------------------------------------- restore
def _client(emulator: Emulator, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def restore(emulator: Emulator, folder: DataFolder, state: dict[str, Any]) -> Restored:
    """Fill the emulator's (already created) tables, buckets and queues from `state`."""
    done = Restored(saved_at=str(state.get("saved_at", "")), parts=dict(state.get("parts", {})))
    # Items go in as any write does (the DynamoDB API, so the table's own put_item), so whatever
    # a table keeps beside its items (indexes) is kept up to date.
    dynamodb = _client(emulator, "dynamodb")
    for name, items in state.get("tables", {}).items():
        if not _exists(dynamodb.describe_table, "table", TableName=name):
            continue
        for start in range(0, len(items), 25):
            requests: dict[str, Any] = {
                name: [
                    {"PutRequest": {"Item": {k: _imported(v) for k, v in item.items()}}}
                    for item in items[start : start + 25]
                ]
            }
            while requests:  # what the emulator did not take, again
                requests = dynamodb.batch_write_item(RequestItems=requests)["UnprocessedItems"]
        done.items += len(items)
    s3 = _client(emulator, "s3")
    for bucket, objects in state.get("buckets", {}).items():
        if not _exists(s3.head_bucket, "bucket", Bucket=bucket):
            continue
        for entry in objects:
            options = {_OBJECT_HEADERS[h]: v for h, v in entry.get("headers", {}).items()}
            body = folder.blob(entry["blob"])
            if "size" in entry and len(body) != entry["size"]:
                raise DataError(f"the saved bytes of {bucket}/{entry['key']} are incomplete")
            s3.put_object(
                Bucket=bucket,
                Key=entry["key"],
                Body=body,
                Metadata=entry.get("metadata", {}),
                **options,
            )
            done.objects += 1
    sqs = _client(emulator, "sqs")
    for queue, messages in state.get("queues", {}).items():
        found = _exists(sqs.get_queue_url, "queue", QueueName=queue)
        if not found:
            continue
        url = found["QueueUrl"]
        for start in range(0, len(messages), 10):
            batch = messages[start : start + 10]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": m["body"],
                    "DelaySeconds": int(m.get("delay_seconds", 0)),
                    "MessageAttributes": {
                        n: _decoded_attribute(v) for n, v in m.get("attributes", {}).items()
                    },
                }
                for i, m in enumerate(batch)
            ]
            failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
            if failed:
                raise DataError(f"messages of {queue} could not be put back: {failed}")
            done.messages += len(batch)
    return done


def _exists(look: Callable[..., Any], kind: str, **names: str) -> Any:
    """`look(**names)`'s answer, or None when the template no longer creates that resource
    (its saved data is then left out)."""
    from botocore.exceptions import ClientError

    try:
        return look(**names)
    except ClientError:
        name = next(iter(names.values()))
        logger.warning("the snapshot has a %s %s the template no longer has; left out", kind, name)
        return None


def _decoded_attribute(value: dict[str, Any]) -> dict[str, Any]:
    if "BinaryValue" in value:
        return {**value, "BinaryValue": base64.b64decode(value["BinaryValue"])}
    return value


# ---------------------------------------------------------------------------------- keepers
class Keeper(Protocol):
    """What reads and fills the emulator's data: in its process, wherever the emulator runs."""

    @property
    def changes(self) -> int:
        """How many requests so far may have changed data."""
        ...

    def load(self, folder: DataFolder, prefix: str) -> Restored:
        """Fill the resources named `prefix`… from the folder's snapshot (DataError when it
        cannot be read or restored); what was put back (nothing without a snapshot)."""
        ...

    def save(self, folder: DataFolder, prefix: str, parts: dict[str, Any]) -> None:
        """Write a snapshot of the resources named `prefix`…, with `parts`, into the folder."""
        ...


class InProcess:
    """The keeper of an emulator running in this process (it reads moto's backends)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._tables = TableCapture()

    @property
    def changes(self) -> int:
        return self.emulator.changes

    def load(self, folder: DataFolder, prefix: str) -> Restored:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            state = folder.read()
            if state is None:
                return Restored()
            restored = restore(self.emulator, folder, state)
            with self.emulator.paused():
                self._tables.seed(prefix, state.get("tables", {}))
        except (KeyError, TypeError, ValueError, OSError, BotoCoreError, ClientError) as exc:
            raise DataError(
                f"{folder.state_file} could not be restored ({exc!r}); {_START_OVER}"
            ) from exc
        return restored

    def save(self, folder: DataFolder, prefix: str, parts: dict[str, Any]) -> None:
        state, blobs = capture(self.emulator, folder, prefix, self._tables)
        state["parts"] = parts
        folder.write(state, blobs)


# ---------------------------------------------------------------------------------- component
class Persistence:
    """A platform component: restores at start, then saves periodically and on stop.

    It keeps the resources of one stack: the tables, buckets and queues named `prefix`….

    `parts` adds small named pieces of state to every snapshot (each a callable answering
    something JSON can hold); what a part held at the last save is `restored.parts[name]`.
    """

    name = "data"

    def __init__(
        self,
        emulator: Emulator | Keeper,
        folder: DataFolder,
        prefix: str,
        *,
        fresh: bool = False,
        interval: float = SAVE_INTERVAL_SECONDS,
    ) -> None:
        self.emulator = emulator
        self.folder = folder
        self.prefix = prefix
        self.fresh = fresh
        self.interval = interval
        self.parts: dict[str, Part] = {}
        self.restored = Restored()
        self._saved_changes = -1
        self._saved_parts: str | None = None
        self._keeper: Keeper = InProcess(emulator) if isinstance(emulator, Emulator) else emulator
        self._save_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add_part(self, name: str, read: Part) -> None:
        self.parts[name] = read

    def part(self, name: str) -> Any:
        """What the part held at the last save (None when nothing was restored)."""
        return self.restored.parts.get(name)

    # ------------------------------------------------------------------ component
    def start(self) -> None:
        self.folder.lock()
        try:
            if self.fresh:
                self.folder.wipe()
            self.restored = self._keeper.load(self.folder, self.prefix)
        except BaseException:
            self.folder.unlock()
            raise
        if self.restored.anything:
            # What was restored is what is saved: no snapshot until something changes.
            self._saved_changes = self._keeper.changes
            self._saved_parts = json.dumps(self.restored.parts, sort_keys=True)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="data-saver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        try:
            self.save()
        finally:
            self.folder.unlock()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ saving
    def save(self) -> bool:
        """Write a snapshot if anything changed since the last one; whether one was written."""
        with self._save_lock:
            changes = self._keeper.changes
            # The parts before the tables: a webhook the Stripe simulator counts as delivered
            # (answered 2xx, so stored and queued) is then in this snapshot's tables too.
            parts = {name: read() for name, read in self.parts.items()}
            parts_json = json.dumps(parts, sort_keys=True)
            if changes == self._saved_changes and parts_json == self._saved_parts:
                return False
            self._keeper.save(self.folder, self.prefix, parts)
            self._saved_changes = changes
            self._saved_parts = parts_json
            return True

    def next_wait(self, took: float) -> float:
        """Seconds until the next save, after one that took `took` seconds."""
        return max(self.interval, SAVE_SHARE * took)

    def _loop(self) -> None:
        wait = self.interval
        while not self._stopping.wait(wait):
            started = time.monotonic()
            try:
                self.save()
            except Exception:  # the next interval tries again; the platform goes on
                logger.exception("saving the data to %s failed", self.folder.path)
            wait = self.next_wait(time.monotonic() - started)
