"""The baseline of the cold-start benchmark: a plain FastAPI app with one route behind Mangum.

No talkturo import, the way such Lambdas are usually written (app built at import time).
"""

from __future__ import annotations

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/v1/account")
def account() -> dict[str, str]:
    return {"object": "account", "id": "acct_baseline", "name": "baseline"}


# The sample event comes from the "prod" stage, which API Gateway puts in the path.
handler = Mangum(app, lifespan="off", api_gateway_base_path="/prod")
