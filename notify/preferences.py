"""A citizen's delivery choices: channels per category, quiet hours, previews, email,
muted agencies, push devices. Every change is recorded (PreferenceChange)."""

import logging
import secrets
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Literal

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from chatserver.core.errors import InvalidInput, NotFound
from chatserver.core.throttle import throttle_check
from identity.models import DeviceSession, User
from identity.services import token_hash
from notify.models import (
    Agency,
    AgencyMute,
    Device,
    Notification,
    NotifySettings,
    Preference,
    PreferenceChange,
)
from notify.senders.base import OutboundMessage
from notify.senders.registry import sender_for

log = logging.getLogger(__name__)
CATEGORIES = [c.value for c in Notification.Category]
CHANNELS = ("push", "sms", "email")
DEFAULT_ENABLED = {"push": True, "sms": False, "email": False}
LOCKED_ON = {("security", "push")}


def channel_enabled(*, prefs: dict[str, bool], category: str, channel: str) -> bool:
    """Whether a category reaches a channel, given the user's stored switches for it."""
    if (category, channel) in LOCKED_ON:
        return True
    return prefs.get(channel, DEFAULT_ENABLED[channel])


@dataclass
class PreferencesView:
    channels: dict[str, dict[str, bool]]
    locked: list[str]
    quiet_start: time | None
    quiet_end: time | None
    private_previews: bool
    email: str
    email_verified: bool
    language: str
    muted_agencies: list[int]


def preferences_get(*, user: User) -> PreferencesView:
    stored = {(p.category, p.channel): p.enabled
              for p in Preference.objects.filter(user=user)}
    channels = {
        category: {channel: (category, channel) in LOCKED_ON
                   or stored.get((category, channel), DEFAULT_ENABLED[channel])
                   for channel in CHANNELS}
        for category in CATEGORIES
    }
    ns = NotifySettings.objects.filter(user=user).first() or NotifySettings(user=user)
    return PreferencesView(
        channels=channels, locked=[f"{c}.{ch}" for c, ch in sorted(LOCKED_ON)],
        quiet_start=ns.quiet_start, quiet_end=ns.quiet_end,
        private_previews=ns.private_previews, email=ns.email,
        email_verified=ns.email_verified_at is not None, language=ns.language,
        muted_agencies=list(AgencyMute.objects.filter(user=user)
                            .values_list("agency_id", flat=True)),
    )


def _record(user: User, what: str, value: object, source: str) -> None:
    PreferenceChange.objects.create(user=user, what=what, value=str(value)[:320], source=source)


@transaction.atomic
def preference_set(*, user: User, category: str, channel: str, enabled: bool,
                   source: str = "api") -> None:
    if category not in CATEGORIES or channel not in CHANNELS:
        raise InvalidInput(f"Unknown category or channel: {category}.{channel}.")
    if (category, channel) in LOCKED_ON and not enabled:
        raise InvalidInput(f"{category}.{channel} cannot be switched off.",
                           field=f"{category}.{channel}")
    Preference.objects.update_or_create(user=user, category=category, channel=channel,
                                        defaults={"enabled": enabled})
    _record(user, f"{category}.{channel}", enabled, source)


@transaction.atomic
def preferences_update(
    *, user: User, channels: dict[str, dict[str, bool]] | None = None,
    quiet_hours: tuple[time, time] | None | Literal[False] = False,
    private_previews: bool | None = None,
    language: str | None = None, muted_agencies: list[int] | None = None,
) -> None:
    """Apply a partial update; `quiet_hours=None` clears them, False leaves them."""
    for category, switches in (channels or {}).items():
        for channel, enabled in switches.items():
            preference_set(user=user, category=category, channel=channel, enabled=enabled)
    ns, _ = NotifySettings.objects.get_or_create(user=user)
    if quiet_hours is not False:
        start, end = quiet_hours if quiet_hours else (None, None)
        if start is not None and start == end:
            raise InvalidInput("Quiet hours need different start and end times.")
        ns.quiet_start, ns.quiet_end = start, end
        _record(user, "quiet_hours", f"{start}-{end}" if start else "off", "api")
    if private_previews is not None:
        ns.private_previews = private_previews
        _record(user, "private_previews", private_previews, "api")
    if language is not None:
        if language not in ("mn", "en"):
            raise InvalidInput("Language is mn or en.")
        ns.language = language
        _record(user, "language", language, "api")
    ns.save()
    if muted_agencies is not None:
        known = set(Agency.objects.filter(pk__in=muted_agencies).values_list("pk", flat=True))
        if known != set(muted_agencies):
            raise InvalidInput("Unknown agency.", unknown=sorted(set(muted_agencies) - known))
        AgencyMute.objects.filter(user=user).exclude(agency_id__in=known).delete()
        for agency_id in known:
            AgencyMute.objects.get_or_create(user=user, agency_id=agency_id)
        _record(user, "muted_agencies", sorted(known), "api")


def email_set(*, user: User, email: str) -> None:
    """A new address is used only after the link sent to it is opened, within
    SONOR_EMAIL_VERIFY_HOURS. Limited per citizen and per address (shared counters), so that
    nobody turns the confirmation mail against someone else's mailbox."""
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput("Not a valid email address.", field="email") from exc
    limit = settings.SONOR_EMAIL_SETS_PER_HOUR
    throttle_check(key=f"email-set:{user.pk}", limit=limit, window_seconds=3600)
    throttle_check(key=f"email-to:{token_hash(email.strip().lower())}", limit=limit,
                   window_seconds=3600)
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        ns, _ = NotifySettings.objects.get_or_create(user=user)
        ns.email, ns.email_verified_at, ns.email_token_hash = email, None, token_hash(token)
        ns.email_token_expires_at = timezone.now() + timedelta(
            hours=settings.SONOR_EMAIL_VERIFY_HOURS)
        ns.save()
        _record(user, "email", email, "api")
    link = f"{settings.SONOR_PUBLIC_URL}/email/verify/{token}"
    async_to_sync(sender_for("email").send)(OutboundMessage(
        kind="email", address=email, title="Имэйл хаягаа баталгаажуулна уу",
        body=f"Sonor-оос мэдэгдэл авах хаягаа баталгаажуулахын тулд нээнэ үү: {link}",
        category="security", link=link, language=ns.language,
    ))


@transaction.atomic
def email_verify(*, token: str) -> User:
    ns = NotifySettings.objects.select_for_update().filter(
        email_token_hash=token_hash(token or ""), email_verified_at__isnull=True).first()
    if ns is None or not ns.email:
        raise NotFound("This confirmation link is unknown or was already used.")
    if ns.email_token_expires_at is None or ns.email_token_expires_at <= timezone.now():
        raise NotFound("This confirmation link has expired; enter the address again in the "
                       "app to get a new one.")
    ns.email_verified_at = timezone.now()
    ns.email_token_hash = ""
    ns.email_token_expires_at = None
    ns.save(update_fields=["email_verified_at", "email_token_hash", "email_token_expires_at"])
    _record(ns.user, "email_verified", ns.email, "email_link")
    return ns.user


@transaction.atomic
def device_register(*, session: DeviceSession, token: str, platform: str, name: str = ""
                    ) -> Device:
    """The push token of this session's app; a token moving to another session moves."""
    if platform not in ("android", "ios", "web"):
        raise InvalidInput("Platform is android, ios or web.")
    Device.objects.filter(session=session).exclude(token_hash=token_hash(token)).delete()
    device, _ = Device.objects.update_or_create(
        token_hash=token_hash(token),
        defaults={"user_id": session.user_id, "session": session, "token": token,
                  "platform": platform, "name": name[:120]})
    return device


def device_delete(*, user: User, device_id: int) -> None:
    deleted, _ = Device.objects.filter(user=user, pk=device_id).delete()
    if not deleted:
        raise NotFound("No such device.")
