"""Lambda entry of the call timeout closer (every 5 minutes).

Ends calls whose final carrier callback never arrived (ended_reason timeout). Thin by design: the
work, and how open calls are found without a scan, is in talkturo.services.calls.close_timed_out.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from talkturo.services import calls

    closed = calls.close_timed_out()
    if closed:
        logger.info("timed-out calls closed", extra={"count": len(closed)})
    return {"closed": closed}
