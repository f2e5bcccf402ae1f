"""Identity events other packages react to: identity says what happened and never imports them
(chat resolves invites held for a number; notify cancels what still waits to be sent to a
number or an account that is gone, tells citizens of a new login or a lost number, and sends
the one-time codes).

All are sent inside the identity write's transaction, so that what receivers write commits
with it or not at all."""

from typing import Any, Protocol

from django.dispatch import Signal

# After a number is bound to its (new) owner. Arguments: user (User), e164 (str).
phone_verified = Signal()

# A number left `user`: `reason` is "number_changed_hands" (another citizen verified it)
# or "number_replaced" (the user verified a new one). Arguments: user, e164, reason.
phone_released = Signal()

# The account was closed. Arguments: user (User).
account_closed = Signal()

# A new device logged in to an existing account through another device's approval or a
# login method. Arguments: user, session (the new DeviceSession), method ("qr", "dan").
login_new = Signal()

# A one-time code must go out by SMS now, outside the inbox and its preferences. Arguments:
# to (E.164), text. Its one receiver (notify) sends it and returns how it went (SmsOutcome).
sms_code_requested = Signal()


class SmsOutcome(Protocol):
    status: str  # "sent" or why not
    retry_after: float | None  # seconds, when the operator said


def sms_code_send(*, to: str, text: str) -> SmsOutcome:
    answers: list[Any] = [answer for _, answer in sms_code_requested.send(
        sender=None, to=to, text=text)]
    if len(answers) != 1:
        raise RuntimeError(f"sms_code_requested needs one receiver, it has {len(answers)}")
    outcome: SmsOutcome = answers[0]
    return outcome
