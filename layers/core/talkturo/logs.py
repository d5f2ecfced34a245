"""One structured logger for the whole package (powertools; JSON lines on Lambda)."""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="talkturo")
