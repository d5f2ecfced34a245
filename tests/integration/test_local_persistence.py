"""The local platform's snapshots, through the emulator: what is saved comes back after the
stack's resources are created again (a restart), saves are skipped when nothing changed, and a
save cut short leaves the previous snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from talkturo.local import persistence as persistence_module
from talkturo.local.emulator import Emulator
from talkturo.local.persistence import DataError, DataFolder, Persistence, TableCapture, capture
from talkturo.local.platform import DevAccount
from talkturo.local.template import Stack, provision

pytestmark = pytest.mark.integration

ITEM = {
    "PK": {"S": "A#acct_1"},
    "SK": {"S": "CONTACT#1"},
    "GSI1PK": {"S": "EMAIL#ada@example.com"},
    "GSI1SK": {"S": "A#acct_1"},
    "name": {"S": "Ada Lovelace ✓"},
    "count": {"N": "12.50"},
    "raw": {"B": b"\x00\xffbytes"},
    "tags": {"SS": ["a", "b"]},
    "scores": {"NS": ["1", "2"]},
    "doc": {"M": {"nested": {"L": [{"BOOL": True}, {"NULL": True}, {"S": "x"}]}}},
}


def clients() -> tuple[Any, Any, Any]:
    return (
        boto3.client("dynamodb", region_name="us-east-1"),
        boto3.client("s3", region_name="us-east-1"),
        boto3.client("sqs", region_name="us-east-1"),
    )


def persistence(emulator: Emulator, stack: Stack, folder: Path, **options: Any) -> Persistence:
    return Persistence(emulator, DataFolder(folder), f"{stack.name}-", **options)


def recreate(stack: Stack) -> None:
    """What a restart does to the stack: its resources are gone, then created from the template."""
    dynamodb, s3, sqs = clients()
    dynamodb.delete_table(TableName=stack.physical["MainTable"])
    bucket = stack.physical["FilesBucket"]
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=entry["Key"])
    s3.delete_bucket(Bucket=bucket)
    for url in stack.physical.values():
        if url.startswith("http"):
            sqs.delete_queue(QueueUrl=url)
    provision(boto3.Session(), stack_name=stack.name)


def test_a_snapshot_brings_back_items_objects_and_messages(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    dynamodb, s3, sqs = clients()
    table, bucket = stack.physical["MainTable"], stack.physical["FilesBucket"]
    queue = stack.physical["ContactImportDeadLetterQueue"]
    dynamodb.put_item(TableName=table, Item=ITEM)
    dynamodb.put_item(TableName=table, Item={"PK": {"S": "A#acct_2"}, "SK": {"S": "ACCOUNT"}})
    s3.put_object(
        Bucket=bucket,
        Key="recordings/acct_1/call ü.wav",
        Body=b"RIFF\x00\x01",
        ContentType="audio/wav",
        ContentDisposition="inline",
        Metadata={"call": "call_1"},
    )
    s3.put_object(Bucket=bucket, Key="imports/a.csv", Body=b"a,b\n", ContentType="text/csv")
    binary = {"DataType": "Binary", "BinaryValue": b"\x01\x02"}
    sqs.send_message(
        QueueUrl=queue,
        MessageBody="in flight",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "x"}, "raw": binary},
    )
    assert sqs.receive_message(QueueUrl=queue, VisibilityTimeout=600)["Messages"]
    sqs.send_message(QueueUrl=queue, MessageBody="waiting", DelaySeconds=600)
    sqs.send_message(QueueUrl=queue, MessageBody="plain")
    first = persistence(emulator, stack, tmp_path)
    first.start()
    first.stop()  # the final save

    recreate(stack)
    second = persistence(emulator, stack, tmp_path)
    second.start()
    try:
        restored = second.restored
        assert (restored.items, restored.objects, restored.messages) == (2, 2, 3)
        assert (
            dynamodb.get_item(TableName=table, Key={"PK": ITEM["PK"], "SK": ITEM["SK"]})["Item"]
            == ITEM
        )
        # Items went back through the table's own writes: its indexes answer too.
        by_email = dynamodb.query(
            TableName=table,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": ITEM["GSI1PK"]},
        )["Items"]
        assert by_email == [ITEM]
        wav = s3.get_object(Bucket=bucket, Key="recordings/acct_1/call ü.wav")
        assert wav["Body"].read() == b"RIFF\x00\x01"
        assert (wav["ContentType"], wav["ContentDisposition"]) == ("audio/wav", "inline")
        assert wav["Metadata"] == {"call": "call_1"}
        assert s3.get_object(Bucket=bucket, Key="imports/a.csv")["Body"].read() == b"a,b\n"
        visible = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
        assert sorted(m["Body"] for m in visible) == ["in flight", "plain"]
        in_flight = next(m for m in visible if m["Body"] == "in flight")
        assert in_flight["MessageAttributes"]["kind"]["StringValue"] == "x"
        assert in_flight["MessageAttributes"]["raw"]["BinaryValue"] == b"\x01\x02"
        delayed = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
        assert delayed == "1"
    finally:
        second.stop()


def test_the_snapshot_is_plain_versioned_json_of_this_stack_only(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    dynamodb, _, _ = clients()
    dynamodb.put_item(TableName=stack.physical["MainTable"], Item=ITEM)
    saver = persistence(emulator, stack, tmp_path)
    saver.add_part("carrier", lambda: {"numbers": ["+14155550100"]})
    saver.start()
    saver.stop()

    state = json.loads((tmp_path / "state.json").read_text())

    assert (state["format"], state["version"]) == ("talkturo-local-data", 1)
    assert all(name.lower().startswith(f"{stack.name}-".lower()) for name in state["tables"])
    assert state["tables"][stack.physical["MainTable"]][0]["name"] == {"S": "Ada Lovelace ✓"}
    assert state["parts"] == {"carrier": {"numbers": ["+14155550100"]}}


def test_nothing_is_written_while_nothing_changes(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    dynamodb, s3, sqs = clients()
    table = stack.physical["MainTable"]
    saver = persistence(emulator, stack, tmp_path)
    saver.start()
    try:
        dynamodb.put_item(TableName=table, Item=ITEM)
        assert saver.save() is True
        # Reads (a worker's empty polls among them) change nothing.
        dynamodb.get_item(TableName=table, Key={"PK": ITEM["PK"], "SK": ITEM["SK"]})
        dynamodb.scan(TableName=table)
        sqs.receive_message(QueueUrl=stack.physical["DialQueue"])
        s3.list_objects_v2(Bucket=stack.physical["FilesBucket"])
        assert saver.save() is False
        dynamodb.delete_item(TableName=table, Key={"PK": ITEM["PK"], "SK": ITEM["SK"]})
        assert saver.save() is True
    finally:
        saver.stop()


def test_a_save_cut_short_leaves_the_previous_snapshot(
    emulator: Emulator, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb, s3, _ = clients()
    table, bucket = stack.physical["MainTable"], stack.physical["FilesBucket"]
    s3.put_object(Bucket=bucket, Key="kept.txt", Body=b"kept")
    # Never stopped: its periodic save must not come (after `recreate`, it would save the
    # emptied stack over the snapshot this test restores).
    saver = persistence(emulator, stack, tmp_path, interval=3600)
    saver.start()
    assert saver.save() is True
    before = (tmp_path / "state.json").read_bytes()
    dynamodb.put_item(TableName=table, Item=ITEM)
    s3.delete_object(Bucket=bucket, Key="kept.txt")
    real_replace = Path.replace

    def dies_before_the_rename(self: Path, target: Any) -> Path:
        if Path(target).name == "state.json":
            raise OSError("killed")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", dies_before_the_rename)
    with pytest.raises(OSError, match="killed"):
        saver.save()
    monkeypatch.undo()
    saver.folder.unlock()

    assert (tmp_path / "state.json").read_bytes() == before
    recreate(stack)
    again = persistence(emulator, stack, tmp_path)
    again.start()
    try:
        assert again.restored.objects == 1
        assert s3.get_object(Bucket=bucket, Key="kept.txt")["Body"].read() == b"kept"
        assert "Item" not in dynamodb.get_item(
            TableName=table, Key={"PK": ITEM["PK"], "SK": ITEM["SK"]}
        )
    finally:
        again.stop()


def test_a_snapshot_it_cannot_read_is_refused_and_fresh_starts_empty(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    (tmp_path / "state.json").write_text(
        json.dumps({"format": "talkturo-local-data", "version": 99})
    )
    refused = persistence(emulator, stack, tmp_path)

    with pytest.raises(DataError, match="version 99"):
        refused.start()

    queue = f"{stack.name}-DialQueue"
    (tmp_path / "state.json").write_text(
        json.dumps({"format": "talkturo-local-data", "version": 1, "queues": {queue: [{}]}})
    )
    with pytest.raises(DataError, match="could not be restored"):
        persistence(emulator, stack, tmp_path).start()

    fresh = persistence(emulator, stack, tmp_path, fresh=True)
    fresh.start()  # the folder was let go by the refused start
    try:
        assert not fresh.restored.anything
        assert not (tmp_path / "state.json").exists()
    finally:
        fresh.stop()


def test_one_data_folder_serves_one_platform(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    running = persistence(emulator, stack, tmp_path)
    running.start()
    try:
        with pytest.raises(DataError, match="in use by another"):
            DataFolder(tmp_path).lock()
    finally:
        running.stop()


def test_the_dev_account_and_its_key_are_found_again(stack: Stack) -> None:
    first = DevAccount(None)
    first.start()
    saved = first.saved_state()

    again = DevAccount(None, lambda: saved)
    again.start()
    chosen = "tk_chosen_dev_key_0123456789abcdef"
    with_key = DevAccount(chosen, lambda: saved)
    with_key.start()

    assert again.found_again
    assert (again.account_id, again.api_key) == (first.account_id, first.api_key)
    # A key from TALKTURO_DEV_API_KEY is added to the same account, and not written down.
    assert (with_key.account_id, with_key.api_key) == (first.account_id, chosen)
    assert with_key.saved_state() == {"account_id": first.account_id, "api_key": None}


def test_a_dev_account_gone_from_the_data_is_created_again(stack: Stack) -> None:
    gone = DevAccount(
        None, lambda: {"account_id": "acct_01NOTTHEREANYMORE0000000000", "api_key": ""}
    )
    gone.start()

    assert not gone.found_again
    assert gone.account_id != "acct_01NOTTHEREANYMORE0000000000"
    assert gone.api_key.startswith("tk_")


def test_data_of_resources_the_template_no_longer_has_is_left_out(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    gone = f"{stack.name}-Gone"
    item = {"PK": {"S": "A#acct_3"}, "SK": {"S": "ACCOUNT"}}
    (tmp_path / "state.json").write_text(
        json.dumps(
            {
                "format": "talkturo-local-data",
                "version": 1,
                "saved_at": "2026-01-01T00:00:00+00:00",
                "tables": {gone: [item], stack.physical["MainTable"]: [item]},
                "buckets": {gone.lower(): [{"key": "k", "blob": "missing"}]},
                "queues": {gone: [{"body": "lost"}]},
                "parts": {},
            }
        )
    )
    restoring = persistence(emulator, stack, tmp_path)

    restoring.start()
    try:
        assert (restoring.restored.items, restoring.restored.objects) == (1, 0)
        assert restoring.restored.messages == 0
    finally:
        restoring.stop()


def test_a_restored_snapshot_is_not_written_again_until_something_changes(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    dynamodb, _, _ = clients()
    dynamodb.put_item(TableName=stack.physical["MainTable"], Item=ITEM)
    first = persistence(emulator, stack, tmp_path)
    first.add_part("carrier", lambda: {"numbers": []})
    first.start()
    first.stop()
    recreate(stack)
    again = persistence(emulator, stack, tmp_path)
    again.add_part("carrier", lambda: again.part("carrier"))

    again.start()
    try:
        assert again.restored.items == 1
        assert again.save() is False
    finally:
        again.stop()


def _items_by_key(state: dict[str, Any], table: str) -> dict[tuple[str, str], Any]:
    return {(i["PK"]["S"], i["SK"]["S"]): i for i in state["tables"][table]}


def test_a_snapshot_reads_again_only_what_changed_and_sees_every_kind_of_write(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    dynamodb, _, _ = clients()
    table = stack.physical["MainTable"]
    folder = DataFolder(tmp_path / "data")
    kept = TableCapture()

    def key(n: int) -> dict[str, Any]:
        return {"PK": {"S": "A#acct_1"}, "SK": {"S": f"C#{n}"}}

    for n in range(6):
        dynamodb.put_item(TableName=table, Item={**key(n), "n": {"N": str(n)}})
    first, _ = capture(emulator, folder, f"{stack.name}-", kept)
    assert len(first["tables"][table]) == 6

    # Every way an item changes: put over, update (in place), delete, a batch, a transaction,
    # and a transaction refused part way (its changes rolled back).
    dynamodb.put_item(TableName=table, Item={**key(0), "n": {"N": "100"}})
    dynamodb.update_item(
        TableName=table,
        Key=key(1),
        UpdateExpression="SET n = :n ADD seen :one",
        ExpressionAttributeValues={":n": {"N": "101"}, ":one": {"N": "1"}},
    )
    dynamodb.delete_item(TableName=table, Key=key(2))
    dynamodb.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": {**key(7), "n": {"N": "7"}}}},
                {"DeleteRequest": {"Key": key(3)}},
            ]
        }
    )
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {**key(8), "n": {"N": "8"}}}},
            {
                "Update": {
                    "TableName": table,
                    "Key": key(4),
                    "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "104"}},
                }
            },
        ]
    )
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key(9), "n": {"N": "9"}}}},
                {"Delete": {"TableName": table, "Key": key(5)}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": key(0),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
            ]
        )

    incremental, _ = capture(emulator, folder, f"{stack.name}-", kept)
    whole, _ = capture(emulator, folder, f"{stack.name}-")
    assert _items_by_key(incremental, table) == _items_by_key(whole, table)
    numbers = {k[1]: v["n"]["N"] for k, v in _items_by_key(incremental, table).items()}
    assert numbers == {"C#0": "100", "C#1": "101", "C#4": "104", "C#5": "5", "C#7": "7", "C#8": "8"}


def test_a_snapshot_row_is_what_the_table_itself_would_answer(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    """Rows are read straight off the emulator's values for plain kinds: each must equal what a
    GetItem answers, whatever kinds an item mixes."""
    dynamodb, _, _ = clients()
    table = stack.physical["MainTable"]
    plain = {
        "PK": {"S": "A#acct_1"},
        "SK": {"S": "PLAIN"},
        "name": {"S": "Zoë \u202e"},
        "big": {"N": "123456789012345678901234567890"},
        "small": {"N": "-0.000001"},
        "yes": {"BOOL": False},
        "nothing": {"NULL": True},
        "tags": {"SS": ["x", "y"]},
        "scores": {"NS": ["3", "4.5"]},
    }
    listed = {"PK": {"S": "A#acct_1"}, "SK": {"S": "LIST"}, "l": {"L": [{"N": "1"}]}}
    for item in (ITEM, plain, listed):
        dynamodb.put_item(TableName=table, Item=item)
    state, _ = capture(emulator, DataFolder(tmp_path / "data"), f"{stack.name}-")
    rows = _items_by_key(state, table)
    for item in (ITEM, plain, listed):
        key = {"PK": item["PK"], "SK": item["SK"]}
        answered = dynamodb.get_item(TableName=table, Key=key)["Item"]
        row = rows[(item["PK"]["S"], item["SK"]["S"])]
        assert json.loads(json.dumps(row)) == row  # plain JSON, nothing of the emulator's own
        assert {k: persistence_module._imported(v) for k, v in row.items()} == answered


def test_a_snapshot_of_a_table_made_again_reads_it_whole(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    dynamodb, _, _ = clients()
    table = stack.physical["MainTable"]
    folder = DataFolder(tmp_path / "data")
    kept = TableCapture()
    dynamodb.put_item(TableName=table, Item={"PK": {"S": "A#1"}, "SK": {"S": "OLD"}})
    capture(emulator, folder, f"{stack.name}-", kept)
    recreate(stack)
    dynamodb.put_item(TableName=table, Item={"PK": {"S": "A#1"}, "SK": {"S": "NEW"}})
    state, _ = capture(emulator, folder, f"{stack.name}-", kept)
    assert list(_items_by_key(state, table)) == [("A#1", "NEW")]


def test_after_a_restore_a_snapshot_holds_what_was_restored_and_what_changed(
    emulator: Emulator, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb, _, _ = clients()
    table = stack.physical["MainTable"]
    for n in range(3):
        dynamodb.put_item(TableName=table, Item={"PK": {"S": "A#1"}, "SK": {"S": f"C#{n}"}})
    first = persistence(emulator, stack, tmp_path)
    first.start()
    first.stop()
    recreate(stack)
    second = persistence(emulator, stack, tmp_path)
    second.start()  # restores, and starts from what it restored
    try:
        dynamodb.delete_item(TableName=table, Key={"PK": {"S": "A#1"}, "SK": {"S": "C#0"}})
        dynamodb.put_item(TableName=table, Item={"PK": {"S": "A#1"}, "SK": {"S": "C#9"}})
        read: list[Any] = []
        row = persistence_module._row
        monkeypatch.setattr(persistence_module, "_row", lambda item: read.append(item) or row(item))
        assert second.save() is True
        assert len(read) == 1  # the new item only: what was restored is not read again
    finally:
        second.stop()
    saved = json.loads((tmp_path / "state.json").read_text())
    whole, _ = capture(emulator, DataFolder(tmp_path / "other"), f"{stack.name}-")
    assert _items_by_key(saved, table) == _items_by_key(whole, table)
    assert sorted(k[1] for k in _items_by_key(saved, table)) == ["C#1", "C#2", "C#9"]


def test_a_campaign_wake_is_not_saved_but_the_job_it_sent_is(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    from talkturo import workflows

    _, _, sqs = clients()
    queue = stack.physical["CampaignQueue"]
    job = {"kind": "wake", "account_id": "acct_1", "campaign_id": "cmp_1", "reason": "start"}
    saver = persistence(emulator, stack, tmp_path)
    saver.start()
    try:
        saver.save()  # the first snapshot
        # An execution waiting in Step Functions is not data a snapshot keeps (the campaign
        # tick finds what a lost wake was for): starting one writes nothing.
        workflows.schedule_wake("cmp_1-start-1", datetime.now(UTC) + timedelta(days=2), job)
        assert saver.save() is False
        # A wake's job on the campaign queue is kept (one already due goes there at once).
        workflows.schedule_wake("cmp_1-retry-2", datetime.now(UTC), job)
    finally:
        saver.stop()

    recreate(stack)
    second = persistence(emulator, stack, tmp_path)
    second.start()
    try:
        assert second.restored.messages == 1
        (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
        assert json.loads(message["Body"]) == job
    finally:
        second.stop()


def test_a_long_save_is_followed_by_a_longer_wait(
    emulator: Emulator, stack: Stack, tmp_path: Path
) -> None:
    # Saving shares the process with the requests: it never takes more than about a tenth of
    # the time, however large the data grows; quick saves keep the interval.
    saver = persistence(emulator, stack, tmp_path, interval=5.0)
    assert saver.next_wait(0.05) == 5.0
    assert saver.next_wait(2.0) == 2.0 * persistence_module.SAVE_SHARE
