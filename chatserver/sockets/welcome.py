"""The answer to `hello`: who the socket is, and what it missed in the inbox and in rooms."""

from django.conf import settings
from django.utils import timezone
from pydantic import BaseModel

from chatserver.chat.selectors import chat_resume
from chatserver.core import protocol
from identity.models import DeviceSession
from identity.services import phone_current
from notify.inbox import notification_frame, unread_count
from notify.selectors import inbox_seq, inbox_since


def welcome_build(*, session: DeviceSession, request_id: str,
                  resume: protocol.ResumeState) -> list[BaseModel]:
    """`welcome` then exactly the events missed since the client's seqs, in order: the inbox,
    then each room (also rooms the client did not list: everything since the user joined)."""
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
    room_events, room_resync = chat_resume(user=user, rooms=resume.rooms,
                                           limit=settings.SONOR_RESUME_LIMIT,
                                           total_limit=settings.SONOR_RESUME_TOTAL_LIMIT)
    events.extend(room_events)
    resync.extend(room_resync)
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
