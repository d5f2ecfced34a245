"""The AWS emulator serialises requests, except SQS long polls, which wait without blocking."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.sqs.models import SQSBackend

from talkturo.local.emulator import Emulator

pytestmark = pytest.mark.integration


def test_a_long_poll_neither_blocks_other_calls_nor_misses_a_new_message(
    emulator: Emulator,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-long-poll")["QueueUrl"]
    received: list[Any] = []
    polling = threading.Thread(
        target=lambda: received.append(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20))
    )

    polling.start()
    # While the poll waits, other calls go through (they would wait the full 20 s otherwise)...
    dynamodb.list_tables()
    assert polling.is_alive()
    # ...and a message sent meanwhile ends the poll.
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    polling.join(timeout=10)

    assert not polling.is_alive()
    assert [m["Body"] for m in received[0]["Messages"]] == ["hello"]


def test_a_long_poll_on_an_empty_queue_answers_empty(emulator: Emulator) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-long-poll-empty")["QueueUrl"]

    answer = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)

    assert answer.get("Messages", []) == []


def _counting_receives(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many receives moto ran, by queue name (each attempt of a long poll is one)."""
    receives: Counter[str] = Counter()
    receive = SQSBackend.receive_message

    def counted(backend: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        receives[queue_name] += 1
        return receive(backend, queue_name, *args, **kwargs)

    monkeypatch.setattr(SQSBackend, "receive_message", counted)
    return receives


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "waited 10 s in vain"
        time.sleep(0.01)


def _long_poll_in_background(sqs: Any, queue: str) -> tuple[threading.Thread, list[Any]]:
    received: list[Any] = []
    polling = threading.Thread(
        target=lambda: received.append(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20))
    )
    polling.start()
    return polling, received


def test_a_long_poll_sleeps_through_requests_that_bring_its_queue_nothing(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    mine = sqs.create_queue(QueueName="emulator-wake-mine")["QueueUrl"]
    other = sqs.create_queue(QueueName="emulator-wake-other")["QueueUrl"]
    receives = _counting_receives(monkeypatch)
    polling, received = _long_poll_in_background(sqs, mine)
    _wait_for(lambda: receives["emulator-wake-mine"] == 1)
    for _ in range(5):
        dynamodb.list_tables()
        sqs.send_message(QueueUrl=other, MessageBody="not yours")
        sqs.get_queue_attributes(QueueUrl=mine, AttributeNames=["All"])
    assert receives["emulator-wake-mine"] == 1  # asleep all along: never looked again
    sqs.send_message(QueueUrl=mine, MessageBody="yours")
    polling.join(timeout=10)

    assert [m["Body"] for m in received[0]["Messages"]] == ["yours"]
    assert receives["emulator-wake-mine"] == 2


def test_a_message_sent_wakes_one_of_the_polls_waiting_on_its_queue(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-wake-one")["QueueUrl"]
    receives = _counting_receives(monkeypatch)
    polls = [_long_poll_in_background(sqs, queue) for _ in range(3)]
    _wait_for(lambda: receives["emulator-wake-one"] == 3)

    sqs.send_message(QueueUrl=queue, MessageBody="one")
    _wait_for(lambda: sum(len(received) for _, received in polls) == 1)

    # One poll woke and took it; the two others slept on (no look that finds nothing).
    assert receives["emulator-wake-one"] == 4
    emulator.end_long_polls()
    for polling, _ in polls:
        polling.join(timeout=10)
    bodies = [m["Body"] for _, received in polls for a in received for m in a.get("Messages", [])]
    assert bodies == ["one"]


def test_a_long_poll_wakes_when_a_delayed_message_becomes_visible(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-wake-delayed")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=1)
    receives = _counting_receives(monkeypatch)

    answer = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20)

    assert [m["Body"] for m in answer["Messages"]] == ["later"]
    # It looked when the poll began and when the delay ended, not every so often in between
    # (a clock tick of difference between the wait and moto's clock may add one look).
    assert receives["emulator-wake-delayed"] <= 3


def _key(pk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": "X"}}


def test_a_failed_transaction_leaves_no_trace(stack: Any) -> None:
    # The emulator rolls back only the items a transaction names (not whole tables): check it
    # still undoes writes that were applied before the failing one.
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = stack.physical["MainTable"]
    dynamodb.put_item(TableName=table, Item={**_key("kept"), "n": {"N": "1"}, "s": {"S": "x"}})

    def transact(*items: dict[str, Any]) -> None:
        dynamodb.transact_write_items(TransactItems=list(items))

    put_new = {"Put": {"TableName": table, "Item": {**_key("new"), "n": {"N": "1"}}}}
    bump_kept = {
        "Update": {
            "TableName": table,
            "Key": _key("kept"),
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    # A condition that fails after two writes were applied
    failing_condition = {
        "ConditionCheck": {
            "TableName": table,
            "Key": _key("absent"),
            "ConditionExpression": "attribute_exists(PK)",
        }
    }
    # An update that fails on the data itself (ADD to a string)
    failing_update = {
        "Update": {
            "TableName": table,
            "Key": _key("kept"),
            "UpdateExpression": "ADD s :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }

    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        transact(put_new, bump_kept, failing_condition)
    with pytest.raises(dynamodb.exceptions.ClientError):
        transact(put_new, failing_update)

    assert "Item" not in dynamodb.get_item(TableName=table, Key=_key("new"))
    kept = dynamodb.get_item(TableName=table, Key=_key("kept"))["Item"]
    assert kept["n"] == {"N": "1"} and kept["s"] == {"S": "x"}
    # And a transaction that succeeds applies everything
    transact(put_new, bump_kept)
    assert dynamodb.get_item(TableName=table, Key=_key("kept"))["Item"]["n"] == {"N": "2"}


def test_a_condition_is_parsed_once_and_still_judged_on_its_own_values(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = stack.physical["MainTable"]
    dynamodb.put_item(TableName=table, Item={**_key("parsed"), "n": {"N": "1"}})
    lexed: list[str] = []
    lex = ConditionExpressionParser._lex_condition_expression

    def counted(parser: ConditionExpressionParser) -> Any:
        lexed.append(parser.condition_expression)
        return lex(parser)

    monkeypatch.setattr(ConditionExpressionParser, "_lex_condition_expression", counted)

    def transact(n: str) -> None:
        check = {
            "TableName": table,
            "Key": _key("parsed"),
            "ConditionExpression": "n = :n",
            "ExpressionAttributeValues": {":n": {"N": n}},
        }
        dynamodb.transact_write_items(TransactItems=[{"ConditionCheck": check}])

    transact("1")
    transact("1")
    # The same condition with another value is another condition: it is refused.
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        transact("2")
    # moto parses a transaction's condition more than once; here each distinct one once.
    assert lexed == ["n = :n", "n = :n"]
    # A condition that does not parse is refused every time, with the same error.
    errors = []
    for _ in range(2):
        with pytest.raises(dynamodb.exceptions.ClientError) as refused:
            dynamodb.put_item(
                TableName=table, Item=_key("parsed"), ConditionExpression="n = :missing"
            )
        errors.append(refused.value.response["Error"])
    assert errors[0] == errors[1]


def test_reads_are_answered_without_moto_s_serializer(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = stack.physical["MainTable"]
    item = {**_key("read"), "n": {"N": "1"}, "tags": {"SS": ["a", "b"]}}
    dynamodb.put_item(TableName=table, Item=item)
    serialized: list[str] = []
    execute = ActionResult.execute_result

    def counted(result: ActionResult, *args: Any, **kwargs: Any) -> Any:
        serialized.append(type(result).__name__)
        return execute(result, *args, **kwargs)

    monkeypatch.setattr(ActionResult, "execute_result", counted)

    got = dynamodb.get_item(TableName=table, Key=_key("read"))["Item"]
    batch = dynamodb.batch_get_item(RequestItems={table: {"Keys": [_key("read")]}})
    queried = dynamodb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "read"}},
    )

    assert got == item and batch["Responses"][table] == [item] and queried["Items"] == [item]
    assert serialized == []


def test_ending_long_polls_answers_a_waiting_one_at_once(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-wake-ended")["QueueUrl"]
    receives = _counting_receives(monkeypatch)
    polling, received = _long_poll_in_background(sqs, queue)
    _wait_for(lambda: receives["emulator-wake-ended"] == 1)

    emulator.end_long_polls()
    polling.join(timeout=10)

    assert not polling.is_alive()
    assert received[0].get("Messages", []) == []


_SCOPE = "AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/{service}/aws4_request"


def _dynamodb_request(target: str, body: bytes) -> tuple[str, bytes, dict[str, str]]:
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{target}",
        "Authorization": _SCOPE.format(service="dynamodb"),
    }
    return "/", body, headers


def test_a_connection_stays_open_for_the_next_request(emulator: Emulator) -> None:
    host, port = emulator.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    answers = []
    sockets = []
    try:
        for _ in range(3):
            path, body, headers = _dynamodb_request("ListTables", b"{}")
            connection.request("POST", path, body=body, headers=headers)
            answer = connection.getresponse()
            answers.append((answer.status, answer.getheader("Connection"), answer.read()))
            # http.client drops the socket of an answer that closes its connection.
            sockets.append(connection.sock)
    finally:
        connection.close()

    assert [(status, closing) for status, closing, _ in answers] == [(200, None)] * 3
    assert sockets[0] is not None and sockets == [sockets[0]] * 3
    assert all(b"TableNames" in body for _, _, body in answers)


def test_answers_without_a_body_and_requests_with_one_keep_the_connection_in_step(
    emulator: Emulator,
) -> None:
    # A HEAD of an object answers its length and no body; a request with a body, then a GET,
    # on the same connection: each answer is read where it starts.
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="emulator-keep-alive")
    s3.put_object(Bucket="emulator-keep-alive", Key="a.txt", Body=b"hello world")
    host, port = emulator.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    auth = {"Authorization": f"{_SCOPE.format(service='s3')}, SignedHeaders=host, Signature=x"}
    try:
        connection.request("HEAD", "/emulator-keep-alive/a.txt", headers=auth)
        head = connection.getresponse()
        head.read()
        connection.request("PUT", "/emulator-keep-alive/b.txt", body=b"x" * 10_000, headers=auth)
        put = connection.getresponse()
        put.read()
        connection.request("GET", "/emulator-keep-alive/a.txt", headers=auth)
        get = connection.getresponse()
        body = get.read()
    finally:
        connection.close()

    assert head.status == 200 and head.getheader("Content-Length") == "11"
    assert put.status == 200
    assert (get.status, body) == (200, b"hello world")
    assert s3.get_object(Bucket="emulator-keep-alive", Key="b.txt")["Body"].read() == b"x" * 10_000


def test_stopping_closes_the_connections_still_open() -> None:
    aws = Emulator().start()
    host, port = aws.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        path, body, headers = _dynamodb_request("ListTables", b"{}")
        connection.request("POST", path, body=body, headers=headers)
        connection.getresponse().read()
        aws.stop()
        assert connection.sock is not None
        assert connection.sock.recv(1) == b""  # the server's end is closed
    finally:
        connection.close()
        aws.stop()
