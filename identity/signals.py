"""Identity events other packages react to (chat resolves invites held for a number; notify
cancels what still waits to be sent to a number or an account that is gone).

All are sent inside the identity write's transaction, so that what receivers write commits
with it or not at all."""

from django.dispatch import Signal

# After a number is bound to its (new) owner. Arguments: user (User), e164 (str).
phone_verified = Signal()

# A number left `user`: `reason` is "number_changed_hands" (another citizen verified it)
# or "number_replaced" (the user verified a new one). Arguments: user, e164, reason.
phone_released = Signal()

# The account was closed. Arguments: user (User).
account_closed = Signal()
