"""Demo login links: a one-time link per demo citizen, printed by `manage.py demo_setup`.

Demo mode only (SONOR_DEMO=1). The token is stored only as its SHA-256; consuming it is a
single conditional UPDATE, so two concurrent uses cannot both succeed.
"""

import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatserver.core.errors import AccountInactive, DemoOnly, Unauthenticated
from identity.models import DemoLoginLink, User
from identity.services import token_hash


def _demo_required() -> None:
    if not settings.SONOR_DEMO:
        raise DemoOnly()


def demo_login_link_create(*, user: User) -> str:
    """A new one-time login token for `user`; the plain token is returned only here."""
    _demo_required()
    token = secrets.token_urlsafe(32)
    DemoLoginLink.objects.create(user=user, token_hash=token_hash(token))
    return token


def demo_login_consume(*, token: str) -> User:
    """The user behind an unused demo login token, marking it used; Unauthenticated if the
    token is unknown or was used already."""
    _demo_required()
    digest = token_hash(token or "")
    with transaction.atomic():
        used = DemoLoginLink.objects.filter(token_hash=digest, used_at__isnull=True).update(
            used_at=timezone.now())
        if not used:
            raise Unauthenticated("This demo login link is unknown or was already used.")
        link = DemoLoginLink.objects.select_related("user").get(token_hash=digest)
    if not link.user.is_active:
        raise AccountInactive()
    return link.user
