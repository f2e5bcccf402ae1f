"""Citizens, their phone numbers, device sessions, QR logins and the access log.

A chat identity is the User (keyed by register number), never the phone number: a number
that changes hands moves to its new owner with none of the old owner's rooms or inbox.
"""

from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q


class UserManager(BaseUserManager["User"]):
    def create_user(self, register_number: str, **fields: object) -> "User":
        user = self.model(register_number=register_number, **fields)
        user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(
        self, register_number: str, password: str | None = None, **fields: object
    ) -> "User":
        user = self.model(register_number=register_number, is_staff=True, is_superuser=True,
                          **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class User(AbstractBaseUser, PermissionsMixin):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"
        CLOSED = "closed"

    register_number = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # When and by which login the citizen was last matched against the state registry ("dan");
    # empty for a citizen created by staff or the demo and never logged in through DAN.
    identity_checked_at = models.DateTimeField(null=True, blank=True)
    identity_checked_by = models.CharField(max_length=16, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "register_number"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.status == self.Status.ACTIVE

    def __str__(self) -> str:
        return self.register_number


class PhoneNumber(models.Model):
    """A verified binding of a number to a user; a released row is kept as history."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="phones")
    e164 = models.CharField(max_length=16)
    verified_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["e164"], condition=Q(released_at__isnull=True),
                name="phone_bound_to_one_user",
            )
        ]
        indexes = [models.Index(fields=["user", "released_at"])]

    def __str__(self) -> str:
        return self.e164


class PhoneVerification(models.Model):
    """A one-time SMS code: to verify a number, or to confirm an act with the verified one."""

    class Purpose(models.TextChoices):
        PHONE = "phone"
        ACCOUNT_CLOSE = "account_close"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="phone_verifications")
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.PHONE)
    e164 = models.CharField(max_length=16)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["e164", "created_at"]),
        ]


class DeviceSession(models.Model):
    """One per logged-in device; the bearer token is stored only as its SHA-256.

    It ends SONOR_SESSION_IDLE_DAYS after last_seen_at (refreshed at most every few minutes)
    and SONOR_SESSION_MAX_DAYS after created_at, whichever comes first."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="device_sessions")
    token_hash = models.CharField(max_length=64, unique=True)
    device_name = models.CharField(max_length=120, blank=True)
    platform = models.CharField(max_length=32, blank=True)
    login_method = models.CharField(max_length=32)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"])]


class QrLogin(models.Model):
    """A QR login token shown by one waiting socket; approved only from a logged-in device."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SCANNED = "scanned"
        APPROVED = "approved"
        DENIED = "denied"
        ROTATED = "rotated"

    token_hash = models.CharField(max_length=64, unique=True)
    channel_name = models.CharField(max_length=200)
    requester_ip = models.GenericIPAddressField(null=True, blank=True)
    requester_device = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    scanned_by_session = models.ForeignKey(
        DeviceSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_session = models.ForeignKey(
        DeviceSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )


class DemoLoginLink(models.Model):
    """A one-time demo login link (demo mode only)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)


class AccessLogEntry(models.Model):
    """Who read a citizen's personal data: shown to that citizen."""

    subject = models.ForeignKey(User, on_delete=models.CASCADE, related_name="access_log")
    actor_kind = models.CharField(max_length=16)  # agency, staff, system
    actor_name = models.CharField(max_length=200)
    action = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["subject", "-created_at"])]
