"""Offline chat push through the delivery pipeline: only devices with no live socket, one
notification per room on the phone, cleared when the room is read elsewhere."""

from collections.abc import Callable

import pytest
from django.test import Client

from chatserver.chat import messages as chat_messages
from chatserver.chat import presence as chat_presence
from chatserver.chat import receipts as chat_receipts
from chatserver.chat.models import Room
from chatserver.chat.push import chat_pushes_plan
from identity.models import User
from identity.services import session_create
from notify import preferences
from notify.delivery import deliveries_process
from notify.models import Delivery, DevOutboxMessage
from notify.senders.base import OutboundMessage
from notify.senders.fcm import build_message
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, group, send

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache

Maker = Callable[..., User]


def phone_device(user: User, token: str) -> int:
    session, _ = session_create(user=user, login_method="test", device_name="phone")
    preferences.device_register(session=session, token=token, platform="android")
    return session.pk


def run_worker() -> None:
    while chat_pushes_plan() | deliveries_process(worker_id="w1"):
        pass


def pushes() -> list[tuple[str, str, str]]:
    return [(m.address, m.title, m.body)
            for m in DevOutboxMessage.objects.filter(sender_kind="push").order_by("pk")]


@pytest.fixture
def pair(chat_user: Maker) -> tuple[User, User, Room]:  # noqa: F811
    bat, saraa = chat_user("Бат"), chat_user("Сараа")
    room = direct_room(bat, saraa)
    chat_pushes_plan()  # the cursor starts here: history is never pushed
    return bat, saraa, room


def test_an_offline_member_gets_a_push_the_sender_does_not(
        pair: tuple[User, User, Room]) -> None:
    bat, saraa, room = pair
    phone_device(saraa, "fcm-token-saraa")
    phone_device(bat, "fcm-token-bat")
    send(bat, room, "Маргааш уулзах уу?")
    run_worker()
    assert pushes() == [("fcm-token-saraa", "Бат", "Маргааш уулзах уу?")]


def test_a_device_with_a_live_socket_gets_no_push(pair: tuple[User, User, Room]) -> None:
    bat, saraa, room = pair
    session_id = phone_device(saraa, "fcm-token-saraa")
    chat_presence.chat_presence_apply(opened=[("c1", saraa.pk, session_id)], seen=[], closed=[])
    send(bat, room, "Сайн уу")
    run_worker()
    assert pushes() == []
    chat_presence.chat_presence_apply(opened=[], seen=[], closed=["c1"])
    send(bat, room, "Байна уу?")
    run_worker()
    assert [body for _, _, body in pushes()] == ["Байна уу?"]


def test_a_burst_collapses_to_one_push_per_room(pair: tuple[User, User, Room]) -> None:
    bat, saraa, room = pair
    phone_device(saraa, "fcm-token-saraa")
    for text in ("Нэг", "Хоёр", "Гурав"):
        send(bat, room, text)
    chat_pushes_plan()
    statuses = list(Delivery.objects.filter(room_id=room.pk).order_by("seq")
                    .values_list("status", flat=True))
    assert statuses == ["cancelled", "cancelled", "pending"]
    run_worker()
    assert [body for _, _, body in pushes()] == ["Гурав"]


def test_group_push_names_the_group_and_the_sender(chat_user: Maker) -> None:  # noqa: F811
    bat, saraa = chat_user("Бат"), chat_user("Сараа")
    room = group(bat, saraa, name="Гэр бүл")
    chat_pushes_plan()
    phone_device(saraa, "fcm-token-saraa")
    send(bat, room, "Оройн хоол бэлэн")
    run_worker()
    assert pushes() == [("fcm-token-saraa", "Гэр бүл", "Бат: Оройн хоол бэлэн")]


def test_reading_elsewhere_cancels_what_waits_and_clears_what_is_shown(
        pair: tuple[User, User, Room]) -> None:
    bat, saraa, room = pair
    phone_device(saraa, "fcm-token-saraa")
    first = send(bat, room, "Нэг")
    run_worker()  # shown on the phone
    second = send(bat, room, "Хоёр")
    chat_pushes_plan()  # waiting

    chat_receipts.room_read(user=saraa, room_id=room.pk, seq=second.seq)  # read on the web
    assert Delivery.objects.get(room_id=room.pk, seq=second.seq,
                                dedupe_key__startswith="chat:").status == "cancelled"
    run_worker()
    clear = Delivery.objects.get(dedupe_key__startswith="chatclear:")
    assert clear.status == "sent" and clear.data == {"type": "chat.clear",
                                                      "room": str(room.pk)}
    assert first.seq < second.seq
    assert [body for _, _, body in pushes()] == ["Нэг", ""]  # the clear shows nothing


def test_private_previews_and_switching_chat_push_off(pair: tuple[User, User, Room]) -> None:
    bat, saraa, room = pair
    phone_device(saraa, "fcm-token-saraa")
    preferences.preferences_update(user=saraa, private_previews=True)
    send(bat, room, "Нууц")
    run_worker()
    assert pushes() == [("fcm-token-saraa", "Бат", "")]
    preferences.preference_set(user=saraa, category="chat", channel="push", enabled=False)
    send(bat, room, "Дахиад")
    run_worker()
    assert len(pushes()) == 1


def test_a_clear_is_a_data_only_fcm_message() -> None:
    message = build_message(OutboundMessage(
        kind="push", address="tok", body="", data={"type": "chat.clear", "room": "4"},
        collapse_key="room4"))
    assert message.notification is None and message.data["type"] == "chat.clear"
    shown = build_message(OutboundMessage(kind="push", address="tok", body="Сайн уу",
                                          collapse_key="room4"))
    assert shown.notification is not None and shown.android.notification.tag == "room4"




def test_a_deleted_message_leaves_no_text_in_the_push_ledger(chat_user: Maker) -> None:
    """Staff read the push ledger (admin, Deliveries): a deleted message must not live on
    there, nor in the development outbox; what still waits is not sent, and a phone showing
    it is told to clear it."""
    bat, saraa, dorj = chat_user("Бат"), chat_user("Сараа"), chat_user("Дорж")
    shown_room = direct_room(bat, saraa)
    waiting_room = group(bat, dorj, name="Ажил")
    chat_pushes_plan()
    phone_device(saraa, "fcm-token-saraa")
    phone_device(dorj, "fcm-token-dorj")
    shown = send(bat, shown_room, "Нууц үг: 4455")
    run_worker()  # on Saraa's phone
    waiting = send(bat, waiting_room, "Дансны дугаар 5000123")
    chat_pushes_plan()  # waiting for Dorj's phone
    assert Delivery.objects.filter(body__contains="4455").exists()
    assert DevOutboxMessage.objects.filter(body__contains="4455").exists()

    chat_messages.message_delete(user=bat, room_id=shown_room.pk, message_id=shown.pk)
    chat_messages.message_delete(user=bat, room_id=waiting_room.pk, message_id=waiting.pk)
    run_worker()

    for secret in ("4455", "5000123"):
        assert not Delivery.objects.filter(body__contains=secret).exists()
        assert not DevOutboxMessage.objects.filter(body__contains=secret).exists()
    waited = Delivery.objects.get(room_id=waiting_room.pk, dedupe_key__startswith="chat:")
    assert waited.status == "cancelled"
    assert [(address, body) for address, _, body in pushes()] == [
        ("fcm-token-saraa", ""), ("fcm-token-saraa", "")]  # the push, then its clear
    clear = Delivery.objects.get(dedupe_key__startswith="chatclear:")
    assert clear.data == {"type": "chat.clear", "room": str(shown_room.pk)}


def test_staff_do_not_read_chat_text_in_the_delivery_admin(pair: tuple[User, User, Room],
                                                           admin_client: Client) -> None:
    bat, saraa, room = pair
    phone_device(saraa, "fcm-token-saraa")
    send(bat, room, "Хувийн яриа")
    run_worker()
    delivery = Delivery.objects.get(room_id=room.pk, dedupe_key__startswith="chat:")
    page = admin_client.get(f"/admin/notify/delivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert "Хувийн яриа" not in page.content.decode()
