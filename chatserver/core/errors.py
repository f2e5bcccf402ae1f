"""Application errors with stable codes; one mapper per transport turns them into JSON."""

from typing import Any


class AppError(Exception):
    code = "error"
    status = 400
    message = "Request failed."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.message
        self.extra = extra
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "extra": self.extra}

    def retry_after_header(self) -> str | None:
        """HTTP's Retry-After for `extra.retry_after`: whole seconds, at least one."""
        if "retry_after" not in self.extra:
            return None
        return str(max(1, int(self.extra["retry_after"] + 0.999)))


class InvalidInput(AppError):
    code = "invalid_input"
    message = "The request is not valid."


class InvalidRegisterNumber(AppError):
    code = "invalid_register_number"
    message = "Not a valid citizen register number."


class InvalidPhoneNumber(AppError):
    code = "invalid_phone_number"
    message = "Not a valid phone number."


class PhoneNotMobile(AppError):
    code = "phone_not_mobile"
    message = "Only mobile numbers can be verified."


class CodeInvalid(AppError):
    code = "code_invalid"
    message = "The code is wrong."


class CodeExpired(AppError):
    code = "code_expired"
    message = "The code has expired; ask for a new one."


class CodeAttemptsExceeded(AppError):
    code = "code_attempts_exceeded"
    message = "Too many wrong attempts; ask for a new code."


class Unauthenticated(AppError):
    code = "unauthenticated"
    status = 401
    message = "Authentication required."


class AccountInactive(AppError):
    code = "account_inactive"
    status = 403
    message = "This account is suspended or closed."


class PermissionDenied(AppError):
    code = "permission_denied"
    status = 403
    message = "You may not do that."


class NotFound(AppError):
    code = "not_found"
    status = 404
    message = "Not found."


class RateLimited(AppError):
    code = "rate_limited"
    status = 429
    message = "Too many requests; try again later."

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message, retry_after=round(retry_after, 1))


class DemoOnly(AppError):
    code = "demo_only"
    status = 403
    message = "Only available in demo mode."


class OriginForbidden(AppError):
    code = "origin_forbidden"
    status = 403
    message = "This origin may not use the API."


class QrNotFound(AppError):
    code = "qr_not_found"
    status = 404
    message = "Unknown login code."


class QrExpired(AppError):
    code = "qr_expired"
    status = 410
    message = "The login code has expired; scan the new one."


class QrAlreadyUsed(AppError):
    code = "qr_already_used"
    status = 409
    message = "The login code was already used."


class QrDenied(AppError):
    code = "qr_denied"
    status = 409
    message = "The login request was denied."


class QrNotScanned(AppError):
    code = "qr_not_scanned"
    status = 409
    message = "Look the login request up on this device before approving it."


class FrameTooLarge(AppError):
    code = "frame_too_large"
    message = "Frames may be at most 64 KiB."


class UnknownFrame(AppError):
    code = "unknown_frame"
    message = "Unknown frame type."


class ServiceUnavailable(AppError):
    """The database (or another store) did not answer: nothing was done; retry."""

    code = "unavailable"
    status = 503
    message = "The service is briefly unavailable; try again."

    def __init__(self, retry_after: float = 2) -> None:
        super().__init__(None, retry_after=retry_after)


class MethodNotAllowed(AppError):
    code = "method_not_allowed"
    status = 405
    message = "This path does not take that method."
