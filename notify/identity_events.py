"""What notify does when identity says something happened (identity/signals.py; connected in
notify.apps): security notices to the citizen, and one-time codes sent by SMS. Identity never
imports notify."""

import logging

from asgiref.sync import async_to_sync

from identity.models import DeviceSession, User
from notify.inbox import notification_create
from notify.senders.base import OutboundMessage, SendResult
from notify.senders.registry import sender_for

log = logging.getLogger(__name__)

_LOGIN_METHOD_MN = {"qr": "QR кодоор", "dan": "ДАН-аар"}


def notice_on_login_new(sender: object, *, user: User, session: DeviceSession, method: str,
                        **kwargs: object) -> None:
    """A device logged in to the account: the citizen is told where from, to end it if it
    was not them."""
    device = session.device_name or "үл мэдэгдэх төхөөрөмж"
    ip = session.ip or "IP хаяг тодорхойгүй"
    how = _LOGIN_METHOD_MN.get(method, method)
    notification_create(
        user=user, category="security",
        title="Шинэ нэвтрэлт",
        body=(f"{how} таны бүртгэлд нэвтэрлээ: {device}, {ip}. "
              "Та биш бол Сессүүд хэсгээс энэ нэвтрэлтийг даруй хаана уу."),
    )


def notice_on_phone_released(sender: object, *, user: User, e164: str, reason: str,
                             **kwargs: object) -> None:
    """Another citizen verified the user's number: the user is told it left their account."""
    if reason != "number_changed_hands":
        return
    notification_create(
        user=user, category="security",
        title="Утасны дугаар өөр хүнд шилжлээ",
        body=f"{e164} дугаарыг өөр иргэн баталгаажуулсан тул таны бүртгэлээс хасагдлаа.",
    )


def sms_code_on_request(sender: object, *, to: str, text: str, **kwargs: object) -> SendResult:
    return sms_send_now(to=to, text=text)


def sms_send_now(*, to: str, text: str) -> SendResult:
    """Send one SMS at once (verification codes), outside the inbox and its preferences."""
    result: SendResult = async_to_sync(sender_for("sms").send)(
        OutboundMessage(kind="sms", address=to, body=text)
    )
    log.info("sms to %s: %s %s", to[:-4] + "****", result.status, result.detail)
    return result
