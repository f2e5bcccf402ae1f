"""Consent before contact: message requests and group invitations (held for a number no one
has verified until someone does), accepted or declined by the invitee."""

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import InviteNotFound, NotAGroup, NotMember, RoleForbidden, RoomFull
from chatserver.chat.frames import invitation_frame
from chatserver.chat.membership import (
    direct_key,
    group_locked,
    is_active_member,
    is_blocked,
    known_phone_set,
    member_join_locked,
    new_direct_allowed,
    room_create,
)
from chatserver.chat.models import Membership, PendingInvite, Room
from chatserver.chat.streams import Unchanged, has_verified_phone, require_verified_phone
from chatserver.core.errors import RateLimited
from chatserver.core.realtime import publish_user_on_commit
from identity.models import User
from notify.inbox import notification_create

log = logging.getLogger(__name__)
Role = Membership.Role


def invitations_open() -> Any:
    """Invitations nobody has answered, cancelled or let expire (declined ones included:
    to their inviter those still look open)."""
    ttl = timedelta(days=chat_setting("SONOR_CHAT_INVITE_TTL_DAYS"))
    return PendingInvite.objects.filter(resolved_at__isnull=True, cancelled_at__isnull=True,
                                        created_at__gte=timezone.now() - ttl)


def invite_hold(*, inviter: User, e164: str, kind: str, room: Room | None,
                invitee: User | None) -> PendingInvite:
    """The inviter's open invitation to `e164` (the same one when asked again), waiting for
    `invitee` (the number's owner now) or, if none, for someone to verify the number."""
    open_invites = invitations_open().filter(inviter=inviter)
    existing = open_invites.filter(e164=e164, kind=kind, room=room).first()
    if existing is not None:
        return existing
    if kind == PendingInvite.Kind.DIRECT:
        new_direct_allowed(inviter)
    if open_invites.count() >= chat_setting("SONOR_CHAT_OPEN_INVITES_MAX"):
        raise RateLimited(3600, "Too many invites are waiting; cancel some first.")
    invite = PendingInvite.objects.create(inviter=inviter, e164=e164, kind=kind, room=room,
                                          invitee=invitee)
    if invitee is not None:
        _tell_invited(invite)
    log.info("invite %s to %s****", invite.pk, e164[:-4])
    return invite


def _tell_invited(invite: PendingInvite) -> None:
    """The invitee learns of the invitation live (`chat.invitation`) and in the inbox (a push
    when offline), unless they blocked the inviter."""
    invitee, inviter = invite.invitee, invite.inviter
    assert invitee is not None
    if is_blocked(blocker_id=invitee.pk, blocked_id=inviter.pk):
        return
    publish_user_on_commit(invitee.pk, invitation_frame(invite))
    who = inviter.name or "Иргэн"
    if invite.kind == PendingInvite.Kind.DIRECT:
        title = f"{who} тантай чатлахыг хүсэж байна"
        body = f"{who} тантай чатлахыг хүсэж байна. Зөвшөөрөх эсвэл татгалзана уу."
    else:
        group_name = invite.room.name if invite.room else ""
        title = f"{who} таныг «{group_name}» бүлэгт урьж байна"
        body = f"{who} таныг «{group_name}» бүлгийн чатад урьж байна. Зөвшөөрөх эсвэл " \
               "татгалзана уу."
    notification_create(user=invitee, category="chat", title=title[:200], body=body)


def invite_cancel(*, user: User, invite_id: int) -> None:
    updated = PendingInvite.objects.filter(
        pk=invite_id, inviter=user, resolved_at__isnull=True, cancelled_at__isnull=True,
    ).update(cancelled_at=timezone.now())
    if not updated:
        raise InviteNotFound()


def _invitation_of(*, user: User, invitation_id: int) -> PendingInvite:
    invite = invitations_open().select_related("inviter", "room").filter(
        pk=invitation_id, invitee=user, declined_at__isnull=True).first()
    if invite is None or is_blocked(blocker_id=user.pk, blocked_id=invite.inviter_id):
        raise InviteNotFound()
    return invite


def invitation_accept(*, user: User, invitation_id: int) -> Room:
    """Say yes: a direct room with the inviter (who now sees the user's name), or a place in
    the group (added by the inviter, who must still administer it). An invitation that can
    no longer be honoured (inviter gone or blocked, no longer an admin, group full) is
    closed and answered InviteNotFound."""
    require_verified_phone(user)
    done = PendingInvite.objects.select_related("room").filter(
        pk=invitation_id, invitee=user, resolved_user=user, room__isnull=False).first()
    if done is not None and done.room is not None:  # accepted already (a retry)
        return done.room
    invite = _invitation_of(user=user, invitation_id=invitation_id)
    inviter = invite.inviter
    room: Room | None = None
    try:
        with transaction.atomic():
            usable = (inviter.is_active and has_verified_phone(inviter)
                      and not is_blocked(blocker_id=inviter.pk, blocked_id=user.pk))
            if usable and invite.kind == PendingInvite.Kind.DIRECT:
                key = direct_key(inviter.pk, user.pk)
                room = Room.objects.filter(direct_key=key).first()
                if room is None:
                    room = room_create(kind=Room.Kind.DIRECT, name="", creator=inviter,
                                       direct_key=key, known_phone=invite.e164,
                                       members=[(inviter, Role.MEMBER), (user, Role.MEMBER)])
                else:
                    known_phone_set(room=room, user=inviter, e164=invite.e164)
            elif usable and invite.room is not None:
                room, _, seq = group_locked(room_id=invite.room.pk, actor=inviter,
                                            roles=(Role.OWNER, Role.ADMIN))
                if not is_active_member(room_id=room.pk, user_id=user.pk):
                    member_join_locked(room=room, seq=seq, user=user, by=inviter)
                else:
                    raise Unchanged(None)
    except Unchanged:
        pass
    except IntegrityError:  # the direct room was just created by the other side
        room = Room.objects.get(direct_key=direct_key(inviter.pk, user.pk))
    except (NotMember, RoleForbidden, RoomFull, NotAGroup) as exc:
        log.info("group invite %s closed: %s", invite.pk, type(exc).__name__)
        room = None
    PendingInvite.objects.filter(pk=invite.pk).update(
        resolved_at=timezone.now(), resolved_user=user, room=room)
    if room is None:
        raise InviteNotFound("The invitation can no longer be accepted.")
    return room


def invitation_decline(*, user: User, invitation_id: int) -> None:
    """Say no. The inviter is not told: their invite looks pending until it expires."""
    invite = _invitation_of(user=user, invitation_id=invitation_id)
    PendingInvite.objects.filter(pk=invite.pk).update(declined_at=timezone.now())


def invites_resolve(*, user: User, e164: str) -> list[PendingInvite]:
    """`user` just verified `e164`: the invitations held for the number now wait for them
    to accept or decline (they are told who invited them)."""
    invites = list(invitations_open().select_related("inviter", "room").filter(
        e164=e164, invitee__isnull=True).exclude(inviter=user).order_by("created_at"))
    for invite in invites:
        try:
            with transaction.atomic():
                invite.invitee = user
                invite.save(update_fields=["invitee"])
                _tell_invited(invite)
        except Exception:  # a chat problem must never fail the phone verification
            log.exception("invite %s could not be passed on", invite.pk)
    return invites


def invites_on_phone_verified(sender: object, *, user: User, e164: str, **kwargs: object
                              ) -> None:
    """identity.signals.phone_verified receiver (connected in chatserver.apps)."""
    invites_resolve(user=user, e164=e164)
