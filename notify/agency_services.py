"""Agencies and their API keys.

A key reads `sk_<prefix>_<secret>`. The prefix (8 letters and digits, no `_`, so the key
splits unambiguously) finds the row; the whole key is stored only as its SHA-256 and is
shown once, when issued. Rotation issues a new key and lets the old one live on for a grace
period (both work meanwhile); revocation ends a key at once.
"""

import hmac
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chatserver.core.errors import AppError, InvalidInput, Unauthenticated
from chatserver.core.sql import in_list
from identity.services import token_hash
from notify.models import AGENCY_CATEGORIES, Agency, AgencyApiKey, agency_default_categories

log = logging.getLogger(__name__)

API_KEY_PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_letters + string.digits


def _api_key_prefix_new() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(API_KEY_PREFIX_LENGTH))


def api_key_issue(*, agency: Agency) -> str:
    """A new API key for `agency`; the plain key is returned only here."""
    for _ in range(5):  # a prefix collision is astronomically rare, but it is unique
        prefix = _api_key_prefix_new()
        key = f"sk_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                AgencyApiKey.objects.create(agency=agency, prefix=prefix, key_hash=token_hash(key))
        except IntegrityError:
            continue
        log.info("api key sk_%s_… issued for agency %s", prefix, agency.pk)
        return key
    raise RuntimeError("could not allocate a unique API key prefix")


class AgencyScopeForbidden(AppError):
    code = "scope_forbidden"
    status = 403
    message = "This agency's keys may not do that; staff set what an agency may send."


def agency_scope_check(*, agency: Agency, category: str, audience: str = "list") -> None:
    """Refuse what the agency's scopes do not allow, before anything about the recipients is
    looked up (so that a key cannot probe register numbers in categories it may not send)."""
    if category not in agency.categories:
        raise AgencyScopeForbidden(f"This agency may not send {category} notices.",
                                   allowed_categories=list(agency.categories))
    if audience == "all" and not agency.broadcast_all:
        raise AgencyScopeForbidden("This agency may broadcast only to lists of register "
                                   "numbers, not to every citizen.")


def agency_categories_parse(value: str | list[str] | None) -> list[str]:
    """Categories from a comma-separated string or a list; None gives the defaults."""
    if value is None:
        return agency_default_categories()
    items = [c.strip() for c in value.split(",")] if isinstance(value, str) else value
    unknown = sorted({c for c in items if c} - set(AGENCY_CATEGORIES))
    if unknown:
        raise InvalidInput(f"Unknown categories: {', '.join(unknown)}; known: "
                           f"{', '.join(AGENCY_CATEGORIES)}.")
    return [c for c in AGENCY_CATEGORIES if c in items]


@transaction.atomic
def agency_create(*, name: str, categories: list[str] | None = None,
                  broadcast_all: bool = False) -> tuple[Agency, str]:
    """A new agency with its first API key (returned once). Unless staff say otherwise it
    may send every category but security, and broadcast to lists only."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("An agency needs a name.")
    categories = agency_categories_parse(categories)
    if Agency.objects.filter(name=name).exists():
        raise InvalidInput(f"An agency named {name!r} already exists.")
    try:
        with transaction.atomic():
            agency = Agency.objects.create(name=name, categories=categories,
                                           broadcast_all=broadcast_all)
    except IntegrityError as exc:  # created concurrently
        raise InvalidInput(f"An agency named {name!r} already exists.") from exc
    log.info("agency %s created: %s (categories %s, broadcast to all: %s)", agency.pk, name,
             ",".join(categories), broadcast_all)
    return agency, api_key_issue(agency=agency)


def api_key_authenticate(*, key: str) -> Agency:
    """The agency behind a live API key, or Unauthenticated."""
    [agency] = api_keys_authenticate([key])
    if isinstance(agency, Unauthenticated):
        raise agency
    return agency


def api_keys_authenticate(keys: list[str]) -> list[Agency | Unauthenticated]:
    """api_key_authenticate for many keys (a batch of agency requests) in one query."""
    prefixes = {}
    for key in keys:
        parts = (key or "").split("_", 2)
        if len(parts) == 3 and parts[0] == "sk" and len(parts[1]) == API_KEY_PREFIX_LENGTH:
            prefixes[key] = parts[1]
    by_prefix = _live_keys(sorted(set(prefixes.values())))
    answers: list[Agency | Unauthenticated] = []
    for key in keys:
        live = by_prefix.get(prefixes.get(key, ""))
        if live is None or not hmac.compare_digest(live.key_hash, token_hash(key)):
            answers.append(Unauthenticated("Not a valid API key."))
        elif live.expired:
            answers.append(Unauthenticated("This API key has expired."))
        else:
            answers.append(live.agency)
    return answers


@dataclass(frozen=True)
class _LiveKey:
    agency: Agency
    key_hash: str
    expired: bool


def _live_keys(prefixes: list[str]) -> dict[str, _LiveKey]:
    """The unrevoked keys with these prefixes, with their agencies. Written out: the ORM's
    select_related query cost four times as much CPU to build as to run (profiled: a sixth
    of the agency batch)."""
    if not prefixes:
        return {}
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = Agency.objects.raw(
        "SELECT a.*, k.prefix AS key_prefix, k.key_hash AS key_hash,"
        " (k.expires_at IS NOT NULL AND k.expires_at <= %s) AS key_expired"
        f" FROM {AgencyApiKey._meta.db_table} k"
        f" JOIN {Agency._meta.db_table} a ON a.id = k.agency_id"
        f" WHERE k.revoked_at IS NULL AND k.prefix IN ({in_list(prefixes)})",
        [now, *prefixes])
    # The key's columns arrive as attributes of the agency that the model does not declare.
    return {row.__dict__["key_prefix"]: _LiveKey(row, row.__dict__["key_hash"],
                                                 bool(row.__dict__["key_expired"]))
            for row in rows}


@transaction.atomic
def api_key_rotate(*, api_key: AgencyApiKey, grace: timedelta | None = None) -> str:
    """A new key for the same agency; the old one keeps working for `grace` (settings:
    SONOR_API_KEY_ROTATION_GRACE_HOURS), so that the agency can deploy the new one."""
    if grace is None:
        grace = timedelta(hours=settings.SONOR_API_KEY_ROTATION_GRACE_HOURS)
    old = AgencyApiKey.objects.select_for_update().get(pk=api_key.pk)
    if old.revoked_at is not None:
        raise InvalidInput("A revoked key cannot be rotated; issue a new one.")
    key = api_key_issue(agency=old.agency)
    ends_at = timezone.now() + grace
    if old.expires_at is None or old.expires_at > ends_at:
        old.expires_at = ends_at
        old.save(update_fields=["expires_at"])
    log.info("api key sk_%s_… of agency %s rotated; it works until %s", old.prefix,
             old.agency_id, old.expires_at.isoformat())
    return key


def api_key_revoke(*, api_key: AgencyApiKey) -> None:
    """The key stops working at once."""
    AgencyApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    log.warning("api key sk_%s_… of agency %s revoked", api_key.prefix, api_key.agency_id)
