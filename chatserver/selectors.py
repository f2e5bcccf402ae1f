"""Reads for the device socket."""

from django.conf import settings
from django.utils import timezone
from pydantic import BaseModel

from chatserver import protocol
from identity.models import DeviceSession
from identity.services import phone_current
from notify.selectors import inbox_seq, inbox_since
from notify.services import notification_frame, unread_count


def welcome_build(*, session: DeviceSession, request_id: str,
                  resume: protocol.ResumeState) -> list[BaseModel]:
    """`welcome` then exactly the events missed since the client's seqs, in order."""
    user = session.user
    events: list[BaseModel] = []
    resync: list[str] = []
    if resume.inbox is not None:
        missed = inbox_since(user=user, after_seq=resume.inbox,
                             limit=settings.SONOR_RESUME_LIMIT)
        if missed is None:
            resync.append("inbox")
        else:
            events.extend(notification_frame(n) for n in missed)
    welcome = protocol.Welcome(
        id=request_id,
        user=protocol.WelcomeUser(id=user.pk, name=user.name, phone=phone_current(user=user)),
        session_id=session.pk,
        server_time=timezone.now(),
        inbox_seq=inbox_seq(user=user),
        unread=unread_count(user=user),
        resync=resync,
    )
    return [welcome, *events]
