"""Domain errors. The API maps each class to one HTTP answer in a single place (api/errors.py)."""

from __future__ import annotations


class TalkturoError(Exception):
    """Base of every error the platform reports to a user."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(TalkturoError):
    """Input that is well-formed JSON but breaks a rule of the domain."""

    status = 422
    code = "invalid_value"


class AuthenticationFailed(TalkturoError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(TalkturoError):
    """Also raised for objects of another account: existence is never revealed."""

    status = 404
    code = "resource_missing"


class Conflict(TalkturoError):
    status = 409
    code = "conflict"


class InsufficientCredits(TalkturoError):
    status = 402
    type = "billing_error"
    code = "insufficient_credits"


class RateLimited(TalkturoError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class PayloadTooLarge(TalkturoError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(TalkturoError):
    status = 415
    code = "unsupported_media_type"
