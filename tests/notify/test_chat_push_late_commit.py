"""A message that commits after a higher event id was already planned still gets its
offline push (PostgreSQL takes ids at insert, so commit order can invert them)."""

import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from chatserver.chat.models import RoomEvent
from chatserver.chat.push import chat_pushes_plan
from identity.models import User
from notify.models import ChatPushCursor
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, send
from tests.notify.test_chat_push import phone_device, pushes, run_worker

chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="SQLite runs one writer at a time: ids always commit in order")
def test_a_message_committed_after_a_higher_id_was_planned_is_pushed(
        chat_user: Callable[..., User]) -> None:  # noqa: F811
    bat, saraa, dorj, tuya = (chat_user(n) for n in ("Бат", "Сараа", "Дорж", "Туяа"))
    slow_room, fast_room = direct_room(bat, saraa), direct_room(dorj, tuya)
    phone_device(saraa, "fcm-token-saraa")
    phone_device(tuya, "fcm-token-tuya")
    chat_pushes_plan()  # the cursor starts here
    inserted, commit = threading.Event(), threading.Event()
    late: list[RoomEvent] = []
    errors: list[BaseException] = []

    def slow_sender() -> None:
        try:
            with transaction.atomic():  # its id is taken now, it commits later
                late.append(send(bat, slow_room, "Удаан ирсэн зурвас"))
                inserted.set()
                assert commit.wait(10)
        except BaseException as exc:  # reported below
            errors.append(exc)
            inserted.set()
        finally:
            connection.close()

    thread = threading.Thread(target=slow_sender)
    thread.start()
    assert inserted.wait(10)
    fast = send(dorj, fast_room, "Түрүүлж ирсэн зурвас")
    assert fast.pk > late[0].pk
    run_worker()  # plans the higher id while the lower one is not visible yet
    assert ChatPushCursor.objects.get().last_event_id == fast.pk
    assert pushes() == [("fcm-token-tuya", "Дорж", "Түрүүлж ирсэн зурвас")]

    commit.set()
    thread.join()
    assert not errors
    run_worker()

    assert pushes() == [("fcm-token-tuya", "Дорж", "Түрүүлж ирсэн зурвас"),
                        ("fcm-token-saraa", "Бат", "Удаан ирсэн зурвас")]
    assert ChatPushCursor.objects.get().holes == {}
