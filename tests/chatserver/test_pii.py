"""The personal-data guard (terms 14.4): register, card and passport numbers are refused with
`pii_warning` unless the sender confirms."""

import pytest
from channels.db import database_sync_to_async

from chatserver.chat import messages as chat_messages
from chatserver.chat.errors import PiiWarning
from chatserver.chat.models import RoomEvent
from chatserver.chat.text import luhn_valid, pii_kinds
from chatserver.core import protocol
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, drain, error_of, send

chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


@pytest.mark.parametrize("text", [
    "Миний регистр УБ99011512",
    "регистр: уб99011512.",           # lower case
    "УБ 99011512",                     # a space between letters and digits
    "ӨҮ05231514 гэж бичээрэй",         # Ө and Ү; born 2005 (month + 20)
    "(ЁЕ-88122345)",
])
def test_register_numbers_are_found(text: str) -> None:
    assert pii_kinds(text) == ["register_number"]


@pytest.mark.parametrize("text", [
    "УБ99013212",        # no 32nd day
    "УБ9901151",         # seven digits (that reads as a passport, not a register)
    "ТУБ99011512",       # inside a longer word
    "УБ990115123",       # inside a longer number
    "УБ99991512",        # month 99
    "AB99011512",        # Latin letters
])
def test_register_lookalikes_are_not_register_numbers(text: str) -> None:
    assert "register_number" not in pii_kinds(text)


@pytest.mark.parametrize("text", [
    "4111111111111111",
    "карт 4111 1111 1111 1111 дээр",
    "5500-0000-0000-0004",
    "4222222222222",             # 13 digits
    "6011 0009 9013 9424",
    "3530111333300000",
    "4111 1111 1111 1111 99112233",  # a card followed by a phone number
    "6250941006528599",          # UnionPay, 16
    "6212345678901265",
])
def test_luhn_valid_card_numbers_are_found(text: str) -> None:
    assert "card_number" in pii_kinds(text)


@pytest.mark.parametrize("text", [
    "4111111111111112",          # fails Luhn
    "99112233",                  # a phone number
    "+976 9911 2233",
    "Дүн 1 250 000 төгрөг",
    "12345678901234567890123",   # 23 digits, no 13-19 digit Luhn-valid part in groups
    "2024-05-01 10:00",
])
def test_other_numbers_are_not_cards(text: str) -> None:
    assert "card_number" not in pii_kinds(text)


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


@pytest.mark.parametrize("text", ["E1234567", "паспорт: E0012345.", "MN1234567",
                                  "Э1234567", "ДА7654321"])
def test_passport_numbers_are_found(text: str) -> None:
    assert pii_kinds(text) == ["passport_number"]


@pytest.mark.parametrize("text", ["e1234567", "E12345678", "E123456", "ABC1234567",
                                  "xE1234567", "1234567", "iPhone 15"])
def test_passport_lookalikes_are_not_passports(text: str) -> None:
    assert "passport_number" not in pii_kinds(text)


def test_several_kinds_at_once() -> None:
    assert pii_kinds("УБ99011512, 4111111111111111, E1234567") == [
        "register_number", "card_number", "passport_number"]


def test_ordinary_chat_is_not_personal_data() -> None:
    for text in ("Сайн уу! 10 цагт уулзъя", "Өргөдөл №12345 хүлээн авлаа", "99112233 руу залга",
                 "Covid-19", "2024 оны 5 сарын 1"):
        assert pii_kinds(text) == [], text


@pytest.mark.django_db
def test_service_refuses_unless_confirmed_and_stores_nothing_when_refused(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    with pytest.raises(PiiWarning) as refused:
        send(a, room, "Карт: 4111 1111 1111 1111", client_msg_id="p")
    assert refused.value.extra == {"kinds": ["card_number"]}
    assert not RoomEvent.objects.filter(room=room, kind="message").exists()
    event = send(a, room, "Карт: 4111 1111 1111 1111", client_msg_id="p", confirm_pii=True)
    assert event.seq == 3
    with pytest.raises(PiiWarning):
        chat_messages.message_edit(user=a, room_id=room.pk, message_id=event.pk, text="E1234567")
    chat_messages.message_edit(user=a, room_id=room.pk, message_id=event.pk, text="E1234567",
                               confirm_pii=True)


@pytest.mark.django_db(transaction=True)
async def test_socket_answers_pii_warning_then_sends_on_confirmation(
        ws_connect, make_token, chat_user) -> None:
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    room = await database_sync_to_async(direct_room)(a, b)
    socket = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    frame = {"type": "chat.send", "id": "s", "room": room.pk, "client_msg_id": "m1",
             "text": "Миний регистр УБ99011512"}
    warning = error_of(await socket.request(frame), "pii_warning")
    assert warning.id == "s" and warning.extra == {"kinds": ["register_number"]}
    await socket.send_json_to({**frame, "id": "s2", "confirm_pii": True})
    frames = await drain(socket)
    ack = next(f for f in frames if isinstance(f, protocol.Ack))
    assert (ack.id, ack.seq) == ("s2", 3)
