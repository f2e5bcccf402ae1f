"""Agencies, the per-user notification inbox and the development outbox of the demo senders."""

from django.conf import settings
from django.db import models


class Agency(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "agencies"

    def __str__(self) -> str:
        return self.name


class AgencyApiKey(models.Model):
    """Shown once at creation; stored as SHA-256 of the whole key, found by its prefix."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)


class InboxState(models.Model):
    """Per-user inbox stream head: seq allocation takes this row's lock."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
        related_name="inbox_state",
    )
    last_seq = models.BigIntegerField(default=0)


class Notification(models.Model):
    class Category(models.TextChoices):
        SERVICE_REQUEST = "service_request"
        PETITION = "petition"
        COMPLAINT = "complaint"
        PAYMENT = "payment"
        SYSTEM = "system"
        SECURITY = "security"
        CHAT = "chat"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    seq = models.BigIntegerField()
    agency = models.ForeignKey(Agency, null=True, blank=True, on_delete=models.PROTECT)
    category = models.CharField(max_length=32, choices=Category.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=4000)
    link = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="inbox_seq_unique"),
        ]
        indexes = [models.Index(fields=["user", "read_at"])]


class DevOutboxMessage(models.Model):
    """What the demo senders 'sent': shown by the demo so that codes and notices can be read."""

    sender_kind = models.CharField(max_length=16)  # sms, push, email
    address = models.CharField(max_length=320)
    title = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["address", "-created_at"])]
