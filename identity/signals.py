"""Identity events other packages react to (chat resolves invites held for a number)."""

from django.dispatch import Signal

# Sent inside the verifying transaction, after a number is bound to its (new) owner.
# Arguments: user (User), e164 (str).
phone_verified = Signal()
