"""Errors of the inbox and the agency API, with stable codes (see chatserver.core.errors)."""

from chatserver.core.errors import AppError


class CitizenNotFound(AppError):
    code = "citizen_not_found"
    status = 404
    message = "No citizen with this register number uses the service."


class NotificationNotFound(AppError):
    code = "notification_not_found"
    status = 404
    message = "No such notification."


class BroadcastNotFound(AppError):
    code = "broadcast_not_found"
    status = 404
    message = "No such broadcast."


class IdempotencyKeyReused(AppError):
    code = "idempotency_key_reused"
    status = 409
    message = "This Idempotency-Key was already used for a different request."


class BroadcastNotCancellable(AppError):
    code = "broadcast_not_cancellable"
    status = 409
    message = "The broadcast has already finished."


class MaintenanceNoticeTooShort(AppError):
    code = "maintenance_notice_too_short"
    status = 422
    message = "Planned maintenance must be announced at least two working days ahead."


class InvalidCursor(AppError):
    code = "invalid_cursor"
    status = 400
    message = "The cursor is not valid; start again from the first page."


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413
    message = "The request body is too large."
