"""Chat errors with stable codes (see chatserver.core.errors for the mapper contract).

Leaf module. A user who was blocked is never told: no code here says "blocked by".
"""

from typing import Any

from chatserver.core.errors import AppError


class PhoneNotVerified(AppError):
    code = "phone_not_verified"
    status = 403
    message = "Verify your phone number to use chat."


class NotMember(AppError):
    # 404, not 403: a room one is not in is indistinguishable from one that does not exist.
    code = "not_member"
    status = 404
    message = "No such room, or you are not a member of it."


class NotAGroup(AppError):
    code = "not_a_group"
    status = 400
    message = "Only group rooms have names, roles and member changes."


class RoleForbidden(AppError):
    code = "role_forbidden"
    status = 403
    message = "Your role in this room does not allow that."


class RoomFull(AppError):
    code = "room_full"
    status = 409
    message = "The room has reached its member limit."


class SelfChat(AppError):
    code = "self_chat"
    status = 400
    message = "That is your own number."


class UserBlocked(AppError):
    code = "user_blocked"
    status = 403
    message = "You blocked this user; unblock them first."


class MessageNotFound(AppError):
    code = "message_not_found"
    status = 404
    message = "No such message in this room."


class NotYourMessage(AppError):
    code = "not_your_message"
    status = 403
    message = "You can only change your own messages."


class MessageDeleted(AppError):
    code = "message_deleted"
    status = 409
    message = "The message was deleted."


class TextEmpty(AppError):
    code = "text_empty"
    message = "The message is empty."


class TextTooLong(AppError):
    code = "text_too_long"
    message = "Messages may be at most 4,096 characters."


class TextControlCharacters(AppError):
    code = "text_control_characters"
    message = "Messages may not contain control characters (newline and tab are allowed)."


class PiiWarning(AppError):
    """The text looks like personal data (terms 14.4): resend with `confirm_pii: true` to send
    it anyway. extra.kinds lists what was found: register_number, card_number,
    passport_number."""

    code = "pii_warning"
    status = 422
    message = "This looks like personal data. Send it anyway only if you mean to."

    def __init__(self, kinds: list[str], **extra: Any) -> None:
        super().__init__(None, kinds=kinds, **extra)


class DirectRoomsLimit(AppError):
    code = "direct_rooms_limit"
    status = 429
    message = "New accounts may start only a few new conversations a day."

    def __init__(self, retry_after: float) -> None:
        super().__init__(None, retry_after=round(retry_after, 1))


class InviteNotFound(AppError):
    code = "invite_not_found"
    status = 404
    message = "No such pending invite."


class UserNotFound(AppError):
    code = "user_not_found"
    status = 404
    message = "No such user."


class ReportInvalid(AppError):
    code = "report_invalid"
    message = "Report either a message or a user, with a reason."
