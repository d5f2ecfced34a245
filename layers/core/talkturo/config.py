"""Runtime settings, read from the environment once and cached.

On AWS the template fills these variables; the local platform fills the same ones from the same
template, so code never knows which of the two it runs on (endpoints come from botocore's own
AWS_ENDPOINT_URL variable). A plain pydantic model validates them: no settings framework needed
for reading a handful of variables.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    table_name: str = Field(default="talkturo-main", alias="TABLE_NAME")
    bucket_name: str = Field(default="talkturo-files", alias="BUCKET_NAME")
    contact_import_queue_url: str = Field(default="", alias="CONTACT_IMPORT_QUEUE_URL")
    aws_region: str = Field(default="us-east-1", alias="AWS_REGION")
    # Where the admin secret lives on AWS (Secrets Manager); locally it is given directly.
    admin_secret_arn: str = Field(default="", alias="ADMIN_SECRET_ARN")
    admin_secret: str = Field(default="", alias="TALKTURO_ADMIN_SECRET")
    signup_grant_credits: str = Field(default="10", alias="SIGNUP_GRANT_CREDITS")
    idempotency_ttl_seconds: int = Field(default=86_400, alias="IDEMPOTENCY_TTL_SECONDS")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.model_validate(dict(os.environ))
