"""Lambda entry of the trial-number expiry sweep (an hourly schedule).

Releases the free plan's trial numbers whose five days have passed. Thin by design: the work
(and how the numbers are found without a scan) is in talkturo.services.numbers.sweep_expired.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from talkturo.services import numbers

    released = numbers.sweep_expired()
    if released:
        logger.info("trial numbers released", extra={"count": len(released)})
    return {"released": released}
