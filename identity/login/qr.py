"""QR login: a web page's socket shows a code; a logged-in device looks it up and approves.

    web page, /ws/v1/login          server                          phone (logged in)
      connect -------------------->  qr_login_create  --> qr.code
                                     every ROTATE_EVERY s: qr_login_rotate --> qr.code
                                                          <------- POST qr/lookup {token}
      <-- qr.scanned                 qr_lookup        --> requester device, IP, time
                                                          <------- POST qr/approve {token}
      <-- login.approved {token}     qr_approve: a new DeviceSession, a security notice
      POST auth/cookie {token} ----> HttpOnly cookie; the login socket closes

A code is single-use, lives SONOR_QR_TOKEN_TTL seconds, is stored only as its SHA-256, and is
never put in a URL: the QR holds `sonor-login:<token>`. Only the device that looked a code up
may approve or deny it, and the new session's token goes only to the socket that showed it.
Every state change happens under a row lock (select_for_update in one transaction), so two
concurrent approvals cannot both succeed.
"""

import io
import logging
import secrets
from datetime import datetime, timedelta

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

from chatserver.core import protocol
from chatserver.core.errors import QrAlreadyUsed, QrDenied, QrExpired, QrNotFound, QrNotScanned
from chatserver.core.realtime import send_to_channel
from identity.models import DeviceSession, QrLogin
from identity.services import session_create, token_hash
from identity.signals import login_new

log = logging.getLogger(__name__)

QR_PREFIX = "sonor-login:"
# The layer message type that carries a login frame to the waiting socket (not a wire type).
LAYER_EVENT = "qr.event"


# ---- the code a web page shows -------------------------------------------------------------

def qr_svg(*, content: str) -> str:
    """A standalone SVG of `content` as a QR code, sized by its viewBox (CSS scales it)."""
    code = segno.make(content, error="m", boost_error=False, micro=False)
    out = io.BytesIO()
    code.save(out, kind="svg", xmldecl=False, omitsize=True, border=4, dark="#000",
              light="#fff", svgclass="sonor-qr", lineclass=None)
    return out.getvalue().decode("ascii")


def qr_code_frame(*, login: QrLogin, token: str) -> protocol.QrCode:
    code = f"{QR_PREFIX}{token}"
    return protocol.QrCode(svg=qr_svg(content=code), code=code, expires_at=login.expires_at)


def qr_login_create(*, channel_name: str, ip: str | None, device: str) -> tuple[QrLogin, str]:
    """A new pending code for the socket `channel_name`; returns it with its plain token."""
    token = secrets.token_urlsafe(32)
    login = QrLogin.objects.create(
        token_hash=token_hash(token), channel_name=channel_name, requester_ip=ip,
        requester_device=device[:200],
        expires_at=timezone.now() + timedelta(seconds=settings.SONOR_QR_TOKEN_TTL),
    )
    return login, token


def qr_login_rotate(*, channel_name: str, ip: str | None, device: str
                    ) -> tuple[QrLogin, str] | None:
    """Retire this socket's unscanned codes and make a new one.

    None while one of its codes is scanned and waiting for approval on a phone (the page then
    shows "confirm on your phone", not a new code); once that expires, rotation resumes.
    """
    now = timezone.now()
    with transaction.atomic():
        open_logins = list(QrLogin.objects.select_for_update().filter(
            channel_name=channel_name,
            status__in=[QrLogin.Status.PENDING, QrLogin.Status.SCANNED]))
        if any(login.status == QrLogin.Status.SCANNED and login.expires_at > now
               for login in open_logins):
            return None
        QrLogin.objects.filter(pk__in=[login.pk for login in open_logins]).update(
            status=QrLogin.Status.ROTATED)
        return qr_login_create(channel_name=channel_name, ip=ip, device=device)


def qr_login_close(*, channel_name: str) -> int:
    """The socket went away: its open codes stop working, so no session is made for nobody."""
    return QrLogin.objects.filter(
        channel_name=channel_name,
        status__in=[QrLogin.Status.PENDING, QrLogin.Status.SCANNED],
    ).update(status=QrLogin.Status.ROTATED)


# ---- the approving device ------------------------------------------------------------------

def _token_parse(token: str) -> str:
    """The token alone, whether the app sends it bare or as the QR's whole text."""
    token = (token or "").strip()
    return token[len(QR_PREFIX):] if token.startswith(QR_PREFIX) else token


def _login_locked(*, token: str) -> QrLogin:
    """The code's row, locked until the caller's transaction ends; QrNotFound if unknown."""
    login = QrLogin.objects.select_for_update().filter(
        token_hash=token_hash(_token_parse(token))).first()
    if login is None:
        raise QrNotFound()
    return login


def _login_open_check(login: QrLogin) -> None:
    """Raise for a code that can no longer be acted on, whoever asks."""
    if login.status == QrLogin.Status.ROTATED:
        raise QrExpired()  # replaced by a newer code on the page: scan that one
    if login.status == QrLogin.Status.APPROVED:
        raise QrAlreadyUsed()
    if login.status == QrLogin.Status.DENIED:
        raise QrDenied()


def _scanned_by_check(login: QrLogin, session: DeviceSession, now: datetime) -> None:
    if login.status != QrLogin.Status.SCANNED or login.scanned_by_session_id != session.pk:
        raise QrNotScanned()
    if login.expires_at <= now:
        raise QrExpired()


def _send_to_socket(login: QrLogin, frame: BaseModel, *, close: bool = False) -> None:
    """Deliver a login frame to the one socket that showed the code, after commit."""
    send_to_channel(login.channel_name,
                    {"type": LAYER_EVENT, "text": frame.model_dump_json(), "close": close})


def qr_lookup(*, session: DeviceSession, token: str) -> QrLogin:
    """The pending login request behind a scanned code, claimed by `session`.

    The first device to look a code up owns it: only it may approve or deny. The waiting page
    is told (`qr.scanned`). Looking up again from the same device is allowed.
    """
    now = timezone.now()
    with transaction.atomic():
        login = _login_locked(token=token)
        _login_open_check(login)
        if (login.status == QrLogin.Status.SCANNED
                and login.scanned_by_session_id != session.pk):
            log.warning("qr login %s scanned by session %s, then looked up by session %s",
                        login.pk, login.scanned_by_session_id, session.pk)
            raise QrAlreadyUsed("This login code was already scanned by another device.")
        if login.expires_at <= now:
            raise QrExpired()
        if login.status == QrLogin.Status.PENDING:
            login.status = QrLogin.Status.SCANNED
            login.scanned_by_session = session
            login.save(update_fields=["status", "scanned_by_session"])
            _send_to_socket(login, protocol.QrScanned())
    return login


def qr_approve(*, session: DeviceSession, token: str) -> DeviceSession:
    """Log the waiting web page in as `session`'s user; returns the new session.

    Only the device that looked the code up may approve it, once. The new session's token is
    delivered only to the waiting socket, and the user gets a security notification.
    """
    now = timezone.now()
    user = session.user
    with transaction.atomic():
        login = _login_locked(token=token)
        _login_open_check(login)
        _scanned_by_check(login, session, now)
        new_session, new_token = session_create(
            user=user, login_method="qr", device_name=login.requester_device,
            platform="web", ip=login.requester_ip)
        login.status = QrLogin.Status.APPROVED
        login.decided_at = now
        login.created_session = new_session
        login.save(update_fields=["status", "decided_at", "created_session"])
        login_new.send(sender=DeviceSession, user=user, session=new_session, method="qr")
        _send_to_socket(login, protocol.LoginApproved(token=new_token, user_name=user.name),
                        close=True)
    log.info("qr login %s approved by session %s: new session %s", login.pk, session.pk,
             new_session.pk)
    return new_session


def qr_deny(*, session: DeviceSession, token: str) -> None:
    """Refuse the waiting web page's login; its code can never be used again."""
    now = timezone.now()
    with transaction.atomic():
        login = _login_locked(token=token)
        _login_open_check(login)
        _scanned_by_check(login, session, now)
        login.status = QrLogin.Status.DENIED
        login.decided_at = now
        login.save(update_fields=["status", "decided_at"])
        _send_to_socket(login, protocol.LoginDenied(), close=True)
    log.info("qr login %s denied by session %s", login.pk, session.pk)
