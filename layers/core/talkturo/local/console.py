"""`talkturo dev`'s console: the log format of the platform's process and of the processes its
workers may run in (local/lambda_process.py)."""

from __future__ import annotations

import logging


def console_logging(verbose: bool) -> None:
    """`talkturo dev`'s console: one line per record, naming the thread (the worker) that
    wrote it; the libraries' chatter only from warnings on."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s  %(message)s",
        datefmt="%H:%M:%S",
    )
    # Imported only now: powertools keeps its records off the handlers the root logger has
    # when its logger is made, so each of them is printed once (as its JSON line).
    from talkturo.logs import name_threads

    name_threads()
    # The libraries' own debug chatter is not what -v is for.
    for noisy in ("botocore", "boto3", "urllib3", "pynamodb", "werkzeug", "asyncio", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The Twilio SDK logs every request with all its headers at INFO: only with -v.
    logging.getLogger("twilio.http_client").setLevel(logging.INFO if verbose else logging.WARNING)
