"""Log lines of handlers running side by side (the local platform's workers) keep their own
keys, name their thread, and the console leaves out the Twilio SDK's request dumps unless -v."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from talkturo.local.console import console_logging
from talkturo.local.runner import LambdaContext
from talkturo.logs import ThreadLogger, name_threads


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_two_threads_keys_do_not_mix() -> None:
    stream = io.StringIO()
    logger = ThreadLogger(service="test-two-threads", stream=stream)
    both_appended = threading.Barrier(2)

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> None:
        logger.append_keys(job=event["job"])
        # Each logs only once the other has appended its keys too.
        both_appended.wait(timeout=5)
        logger.info("working")

    def worker(name: str) -> None:
        context = LambdaContext(
            function_name=name,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
            memory_limit_in_mb=128,
            timeout_seconds=3,
        )
        handler({"job": f"job of {name}"}, context)

    threads = [
        threading.Thread(target=worker, args=(name,), name=f"sqs:{name}")
        for name in ("importer", "dialer")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    seen = {(line["function_name"], line["job"]) for line in lines(stream)}
    assert seen == {("importer", "job of importer"), ("dialer", "job of dialer")}


def test_removed_keys_go_from_this_thread_only() -> None:
    stream = io.StringIO()
    logger = ThreadLogger(service="test-remove-keys", stream=stream)
    logger.append_keys(call_id="call_1", account_id="acct_1")
    other: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: other.append(logger.get_current_keys()))

    logger.remove_keys(["call_id"])
    thread.start()
    thread.join(timeout=5)
    logger.info("after")

    assert lines(stream)[0]["account_id"] == "acct_1"
    assert "call_id" not in lines(stream)[0]
    assert "account_id" not in other[0]


def test_each_line_names_its_thread() -> None:
    stream = io.StringIO()
    logger = ThreadLogger(service="test-thread-names", stream=stream)
    name_threads(logger)
    thread = threading.Thread(target=lambda: logger.info("hello"), name="sqs:DialQueue")

    thread.start()
    thread.join(timeout=5)

    assert lines(stream)[0]["thread_name"] == "sqs:DialQueue"


@pytest.fixture
def levels() -> Iterator[None]:
    names = ("twilio.http_client", "botocore", "moto")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("levels")
@pytest.mark.parametrize(("verbose", "shown"), [(False, False), (True, True)])
def test_the_twilio_sdks_request_dumps_show_only_with_verbose(verbose: bool, shown: bool) -> None:
    console_logging(verbose)

    twilio = logging.getLogger("twilio.http_client")
    assert twilio.isEnabledFor(logging.INFO) is shown
    assert twilio.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("botocore").isEnabledFor(logging.INFO)
