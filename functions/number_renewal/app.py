"""Lambda entry of the number rent renewal (an hourly schedule).

Charges each number's monthly rent when it falls due, suspends a number whose rent the balance
cannot pay, releases one whose grace ran out unpaid. Thin by design: the work (and how the
numbers are found without a scan) is in talkturo.services.numbers.sweep_rent.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from talkturo.services import numbers

    renewed = numbers.sweep_rent()
    if renewed:
        logger.info("number rent renewed", extra={"count": len(renewed)})
    return {"renewed": renewed}
