"""The AWS emulator in a process of its own: served there, its data saved and restored there,
and gone when the platform that started it is."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from talkturo.local.emulator_process import EmulatorError, EmulatorProcess
from talkturo.local.persistence import DataError, DataFolder, Persistence
from talkturo.local.template import provision

pytestmark = pytest.mark.integration

ITEM = {"PK": {"S": "A#acct_1"}, "SK": {"S": "CT#1"}, "raw": {"B": b"\x00\xff"}}


def _client(aws: EmulatorProcess, service: str) -> object:
    return boto3.client(
        service,
        endpoint_url=aws.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_its_data_is_saved_and_restored_in_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorProcess() as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        stack = provision(boto3.Session(), stack_name="proc")
        table = stack.physical["MainTable"]
        dynamodb = _client(aws, "dynamodb")
        dynamodb.put_item(TableName=table, Item=ITEM)  # type: ignore[attr-defined]
        saver = Persistence(aws, DataFolder(tmp_path), "proc-", interval=3600)
        saver.start()
        saver.add_part("note", lambda: {"kept": True})
        assert saver.save() is True
        assert saver.save() is False  # nothing changed since
        saver.stop()
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["parts"] == {"note": {"kept": True}}
    assert [item["SK"] for item in saved["tables"][table]] == [{"S": "CT#1"}]

    with EmulatorProcess() as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        provision(boto3.Session(), stack_name="proc")
        again = Persistence(aws, DataFolder(tmp_path), "proc-", interval=3600)
        again.start()
        try:
            assert (again.restored.items, again.restored.parts) == (1, {"note": {"kept": True}})
            found = _client(aws, "dynamodb").get_item(  # type: ignore[attr-defined]
                TableName=table, Key={"PK": ITEM["PK"], "SK": ITEM["SK"]}
            )
            assert found["Item"] == ITEM
        finally:
            again.stop()


def test_a_snapshot_it_cannot_read_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with EmulatorProcess() as aws:
        saver = Persistence(aws, DataFolder(tmp_path), "proc-")
        with pytest.raises(DataError, match="--fresh"):
            saver.start()
        assert aws.running


def test_it_ends_when_the_platform_that_started_it_is_gone() -> None:
    aws = EmulatorProcess().start()
    process = aws._process
    assert process is not None and aws.changes == 0
    assert aws._sender is not None
    aws._sender.close()  # as when the platform's process dies: its end of the pipe closes
    try:
        process.wait(timeout=30)
    finally:
        aws._sender = None
        aws.stop()
    assert process.returncode == 0
    with pytest.raises(EmulatorError):
        _ = aws.changes


def test_a_port_in_use_is_reported() -> None:
    with EmulatorProcess() as first:
        port = int(first.endpoint.rsplit(":", 1)[1])
        with pytest.raises(EmulatorError, match=f"127.0.0.1:{port}"):
            EmulatorProcess(port=port).start()
