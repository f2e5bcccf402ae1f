"""Agencies, the per-user notification inbox and the development outbox of the demo senders."""

from django.conf import settings
from django.db import models
from django.db.models import Q

# What agencies may send; `chat` is the server's own.
AGENCY_CATEGORIES = ("service_request", "petition", "complaint", "payment", "system",
                     "security")
# What a new agency may send until staff say otherwise: never security (the citizen's own
# login and number notices), never a broadcast to everyone.
AGENCY_DEFAULT_CATEGORIES = ("service_request", "petition", "complaint", "payment", "system")


def agency_default_categories() -> list[str]:
    return list(AGENCY_DEFAULT_CATEGORIES)


class Agency(models.Model):
    """An agency's API keys all carry its scopes: the categories it may send, and whether it
    may broadcast to every citizen (else only to lists of register numbers)."""

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    categories = models.JSONField(default=agency_default_categories)
    broadcast_all = models.BooleanField(default=False)
    # SMS parts the agency's notifications may use per day (Asia/Ulaanbaatar); null: no cap.
    sms_daily_budget_parts = models.PositiveIntegerField(null=True, blank=True)

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

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"sk_{self.prefix}_…"

    @property
    def is_live(self) -> bool:
        from django.utils import timezone

        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now())


class InboxState(models.Model):
    """Per-user inbox stream head: seq allocation takes this row's lock."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
        related_name="inbox_state",
    )
    last_seq = models.BigIntegerField(default=0)


# The condition of the partial unique indexes on (agency, idempotency_key). A lookup by key
# states it too: SQLite uses a partial index only for a query that does.
HAS_IDEMPOTENCY_KEY = ~Q(idempotency_key="")


class Notification(models.Model):
    """One item of a user's inbox stream. Agency notifications carry the agency's own
    reference and, for payments, the amount and due date. A reported (misaddressed) one is
    hidden from its recipient and shown to the agency and staff."""

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
    broadcast = models.ForeignKey("Broadcast", null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="notifications")
    category = models.CharField(max_length=32, choices=Category.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=4000)
    link = models.URLField(blank=True, max_length=1000)
    reference = models.CharField(max_length=100, blank=True)  # the agency's request number
    amount_mnt = models.BigIntegerField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    report_reason = models.CharField(max_length=500, blank=True)
    # A retried agency request with the same key gets this notification back.
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_digest = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="inbox_seq_unique"),
            models.UniqueConstraint(
                fields=["agency", "idempotency_key"], condition=HAS_IDEMPOTENCY_KEY,
                name="notification_idempotency_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "read_at"]),
            models.Index(fields=["agency", "reported_at"]),
        ]


class Broadcast(models.Model):
    """One message to all citizens or to a list of register numbers, fanned out into inboxes
    by workers in short batches (`cursor` marks where the next batch starts)."""

    class Audience(models.TextChoices):
        ALL = "all"
        LIST = "list"

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        RUNNING = "running"
        DONE = "done"
        CANCELLED = "cancelled"

    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="broadcasts")
    category = models.CharField(max_length=32, choices=Notification.Category.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=4000)
    link = models.URLField(blank=True, max_length=1000)
    reference = models.CharField(max_length=100, blank=True)
    audience = models.CharField(max_length=8, choices=Audience.choices)
    register_numbers = models.JSONField(default=list, blank=True)
    starts_at = models.DateTimeField()
    maintenance_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    total = models.IntegerField(default=0)
    done = models.IntegerField(default=0)
    delivered = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)  # listed register numbers with no citizen
    # Audience all: last user id done, and the highest id when it started (later sign-ups
    # are not included); audience list: the index of the next register number.
    cursor = models.BigIntegerField(default=0)
    last_user_id = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_digest = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agency", "idempotency_key"], condition=HAS_IDEMPOTENCY_KEY,
                name="broadcast_idempotency_unique",
            ),
        ]
        indexes = [models.Index(fields=["status", "starts_at"])]


class DevOutboxMessage(models.Model):
    """What the demo senders 'sent': shown by the demo so that codes and notices can be read."""

    sender_kind = models.CharField(max_length=16)  # sms, push, email
    address = models.CharField(max_length=320)
    title = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["address", "-created_at"])]


class Device(models.Model):
    """A push target: an FCM registration token of one app install (one per session)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="push_devices")
    session = models.ForeignKey("identity.DeviceSession", null=True, blank=True,
                                on_delete=models.CASCADE, related_name="push_devices")
    token = models.CharField(max_length=4096)
    token_hash = models.CharField(max_length=64, unique=True)  # FCM tokens are long
    platform = models.CharField(max_length=16)  # android, ios, web
    name = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class NotifySettings(models.Model):
    """A citizen's delivery settings beyond the per-category switches."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                primary_key=True, related_name="notify_settings")
    quiet_start = models.TimeField(null=True, blank=True)  # Asia/Ulaanbaatar wall clock
    quiet_end = models.TimeField(null=True, blank=True)
    private_previews = models.BooleanField(default=False)  # pushes without message text
    email = models.EmailField(blank=True)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    email_token_hash = models.CharField(max_length=64, blank=True)
    email_token_expires_at = models.DateTimeField(null=True, blank=True)
    language = models.CharField(max_length=2, default="mn")


class Preference(models.Model):
    """One switch: category x channel. Missing rows mean the default (push on, others off)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notify_preferences")
    category = models.CharField(max_length=32, choices=Notification.Category.choices)
    channel = models.CharField(max_length=8)  # push, sms, email
    enabled = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "category", "channel"],
                                               name="preference_unique")]


class AgencyMute(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="agency_mutes")
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "agency"],
                                               name="agency_mute_unique")]


class PreferenceChange(models.Model):
    """Every change of a citizen's delivery choices, for their history and for support."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="preference_changes")
    what = models.CharField(max_length=100)
    value = models.CharField(max_length=320)
    source = models.CharField(max_length=32)  # api, email_unsubscribe, ...
    created_at = models.DateTimeField(auto_now_add=True)


class Delivery(models.Model):
    """The transactional outbox: one row per notification, channel and address, written in
    the notification's transaction and sent by workers."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for next_attempt_at (first try, retry, quiet hours)
        SENDING = "sending"  # leased by a worker until lease_until
        SENT = "sent"
        FAILED = "failed"  # permanent failure or out of attempts: a dead letter
        INVALID = "invalid"  # the address is dead
        EXPIRED = "expired"  # not sent within its validity
        CANCELLED = "cancelled"  # read elsewhere first, or preferences changed
        DELIVERED = "delivered"  # the operator's receipt says the phone got the SMS
        UNDELIVERED = "undelivered"  # the operator's receipt says it did not

    # An inbox notification's copy, or (notification null) a chat push whose payload and
    # recipient are on the row itself.
    notification = models.ForeignKey(Notification, null=True, blank=True,
                                     on_delete=models.CASCADE, related_name="deliveries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="+")
    room_id = models.BigIntegerField(null=True, blank=True)
    seq = models.BigIntegerField(null=True, blank=True)
    title = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    channel = models.CharField(max_length=8)
    address = models.CharField(max_length=4096)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL)
    dedupe_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    escalation = models.BooleanField(default=False)  # send only if still unread by then
    next_attempt_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    provider_id = models.CharField(max_length=200, blank=True)
    parts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    receipt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["provider_id"]),
            models.Index(fields=["user", "room_id", "status"]),
        ]


class ChatPushCursor(models.Model):
    """How far the chat push job has read the rooms' message events (one row), and the ids
    below that it passed over because they were not committed yet (chatserver.chat.push)."""

    last_event_id = models.BigIntegerField(default=0)
    # {event id: when it was first passed over (Unix seconds)}
    holes = models.JSONField(default=dict, blank=True)


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    worker = models.CharField(max_length=64)
    status = models.CharField(max_length=16)
    detail = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()


class SmsBudgetDay(models.Model):
    """SMS parts an agency's notifications took on one local day (Asia/Ulaanbaatar). A
    worker reserves a message's parts here with one conditional UPDATE before it sends, so
    racing workers never spend past the budget together."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    parts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agency", "day"],
                                               name="sms_budget_day_unique")]
