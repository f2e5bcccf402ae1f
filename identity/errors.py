"""Errors of sessions and account confirmation (chatserver/core/errors.py holds the shared ones)."""

from chatserver.core.errors import AppError, Unauthenticated


class SessionExpired(Unauthenticated):
    code = "session_expired"
    message = "This session has expired; log in again."


class ConfirmationRequired(AppError):
    code = "confirmation_required"
    status = 403
    message = ("Confirm with the code sent to your phone (POST account/close/code), "
               "or log in again and retry within a few minutes.")


class NoVerifiedPhone(AppError):
    code = "no_verified_phone"
    status = 409
    message = "There is no verified phone number to send a code to; log in again instead."


class SmsFailed(AppError):
    code = "sms_failed"
    status = 503
    message = "The SMS with the code could not be sent; try again later."

    def __init__(self, retry_after: float) -> None:
        super().__init__(None, retry_after=round(retry_after, 1))
