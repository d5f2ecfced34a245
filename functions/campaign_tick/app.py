"""Lambda entry of the campaign tick (every minute): the engine's backstop and sweeper.

Thin by design: the work (start due scheduled campaigns, sweep expired leases, dispatch, complete
campaigns with nobody left) is in talkturo.services.campaigns.tick.
"""

from __future__ import annotations

import importlib
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    campaigns = importlib.import_module("talkturo.services.campaigns")
    return campaigns.tick()
