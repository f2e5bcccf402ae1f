"""Errors of the pluggable login methods (kept here: chatserver/core/errors.py holds the
shared ones)."""

from chatserver.core.errors import AppError


class LoginMethodUnavailable(AppError):
    code = "login_method_unavailable"
    status = 404
    message = "This login method is not enabled on this server."
