"""Citizens' privacy in chat, each test written as an attack that must fail: disguised text,
names and numbers learnt from user ids or phone numbers, contacts forced on strangers."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from chatserver.chat import messages as chat_messages
from chatserver.chat import moderation as chat_moderation
from chatserver.chat import rooms as chat_rooms
from chatserver.chat.errors import PiiWarning, TextEmpty
from chatserver.chat.models import Block, PendingInvite, Report, Room
from identity.models import User
from identity.services import _phone_bind
from notify.models import Notification
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, group, new_phone, phone_of, send

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


# ---- invisible formatting characters -------------------------------------------------------

def test_bidi_and_zero_width_characters_cannot_disguise_a_message(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    # "invoice_\u202egpj.exe" is shown as "invoice_exe.jpg" by a bidi-aware client.
    assert send(a, room, "invoice_\u202egpj.exe").text == "invoice_gpj.exe"
    for hidden in ("\u202a", "\u202b", "\u202c", "\u202d", "\u2066", "\u2067", "\u2068",
                   "\u2069", "\u200b", "\u200e", "\u200f", "\u2060", "\u2061", "\u2064",
                   "\ufeff", "\u00ad"):
        assert send(a, room, f"банк{hidden}аас").text == "банкаас", repr(hidden)
    # Only invisible characters: nothing is left to send.
    with pytest.raises(TextEmpty):
        send(a, room, "\u200b\u2066\ufeff")
    # A register number split by a zero-width space is still personal data.
    with pytest.raises(PiiWarning):
        send(a, room, "УБ\u200b90010112")
    # Edits are cleaned the same way.
    message = send(a, room, "анхны")
    edited = chat_messages.message_edit(user=a, room_id=room.pk, message_id=message.pk,
                                        text="\u202eнууц")
    assert edited is not None and edited.text == "нууц"


def test_emoji_and_mongolian_script_keep_the_characters_they_need(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    family = "👩\u200d👩\u200d👧"  # joined by ZWJ
    england = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    mongolian = "ᠬᠠᠭᠠ\u180eᠨ"  # the vowel separator of traditional script
    for text in (family, england, mongolian, "می\u200cخواهم"):  # ZWNJ
        assert send(a, room, text).text == text
    # Tag characters outside a flag are hidden text: removed.
    assert send(a, room, "hi\U000e0068\U000e0069").text == "hi"


def test_group_names_cannot_hide_or_reverse_text(chat_user) -> None:
    owner = chat_user()
    room = group(owner, name="Ажил\u202e\u200bын\u2066 баг")
    assert room.name == "Ажилын баг"
    renamed = chat_rooms.group_rename(actor=owner, room_id=room.pk, name="\ufeffШинэ\u2069")
    assert renamed.name == "Шинэ"


# ---- user ids ------------------------------------------------------------------------------

@pytest.fixture
def client_for(make_api_client, make_token):  # type: ignore[no-untyped-def]
    return lambda user: make_api_client(make_token(user))


def test_probing_user_ids_learns_no_name_and_no_existence(chat_user, client_for) -> None:
    """User ids are sequential: an attacker who blocks or reports ids one by one must learn
    nothing about users they never shared a room with, not even that the id exists."""
    attacker, victim, friend = chat_user("Халдагч"), chat_user("Нууц Хүн"), chat_user("Найз")
    direct_room(attacker, friend)
    client = client_for(attacker)
    unused = victim.pk + 1000
    answers = []
    for user_id in (victim.pk, unused):
        blocked = client.post("/api/v1/blocks", {"user_id": user_id})
        reported = client.post("/api/v1/reports", {"user_id": user_id, "reason": "спам"})
        unblocked = client.delete(f"/api/v1/blocks/{user_id}")
        answers.append([(r.status_code, r.json()) for r in (blocked, reported, unblocked)])
        assert "Нууц" not in (blocked.content + reported.content).decode()
    assert answers[0] == answers[1]
    assert answers[0][0] == (404, {"code": "user_not_found", "message": "No such user.",
                                   "extra": {}})
    assert not Block.objects.exists() and not Report.objects.exists()
    # Someone the attacker shares a room with can be blocked; the answer names no one.
    blocked = client.post("/api/v1/blocks", {"user_id": friend.pk})
    assert blocked.status_code == 201 and blocked.json().keys() == {"user_id", "created_at"}


def test_requests_naming_user_ids_are_rate_limited_per_account(chat_user, client_for,
                                                               settings) -> None:
    settings.SONOR_CHAT_USER_ROUTES_PER_HOUR = 5
    attacker = chat_user()
    client = client_for(attacker)
    codes = [client.post("/api/v1/blocks", {"user_id": attacker.pk + n}).status_code
             for n in range(1, 7)]
    assert codes == [404] * 5 + [429]
    # Every route that names a user id counts against the same budget.
    owner_room = group(attacker)
    assert client.delete(f"/api/v1/rooms/{owner_room.pk}/members/1").status_code == 429
    assert client.post("/api/v1/reports", {"user_id": 1, "reason": "x"}).status_code == 429


# ---- phone numbers of contacts -------------------------------------------------------------

def test_a_contact_sees_only_the_number_they_typed_and_never_a_new_one(chat_user,
                                                                       client_for) -> None:
    bat, saraa = chat_user("Бат"), chat_user("Сараа")
    old_number = phone_of(bat)
    room = direct_room(saraa, bat)  # Saraa typed Bat's number; Bat never got Saraa's

    def peer(viewer: User) -> dict:
        rooms = client_for(viewer).get("/api/v1/rooms").json()
        return next(r["peer"] for r in rooms if r["id"] == room.pk)

    assert peer(bat) == {"id": saraa.pk, "name": "Сараа", "phone": None, "phone_status": "none"}
    assert peer(saraa) == {"id": bat.pk, "name": "Бат", "phone": old_number,
                           "phone_status": "verified"}
    # Bat blocks Saraa and moves to a new number: she is never told the new one.
    chat_moderation.user_block(blocker=bat, user_id=saraa.pk)
    new_number = new_phone()
    with transaction.atomic():
        _phone_bind(user=bat, e164=new_number, now=timezone.now())
    assert peer(saraa) == {"id": bat.pk, "name": "Бат", "phone": None,
                           "phone_status": "changed_hands"}
    assert new_number not in str(client_for(saraa).get(f"/api/v1/rooms/{room.pk}").json())
    # Finding the room again by the new number (which she has now typed) shows it.
    chat_moderation.user_unblock(blocker=bat, user_id=saraa.pk)
    assert chat_rooms.room_direct_get_or_create(user=saraa, phone=new_number).pk == room.pk
    assert peer(saraa)["phone"] == new_number


# ---- contact without consent ---------------------------------------------------------------

def _invite_shape(answer: dict) -> dict:
    return answer | {"id": 0, "phone": "", "created_at": "", "room": None}


def test_knowing_a_number_neither_opens_a_room_nor_reveals_a_name(chat_user,
                                                                  client_for) -> None:
    attacker, victim = chat_user("Халдагч"), chat_user("Нууц Хүн")
    client = client_for(attacker)
    asked = client.post("/api/v1/rooms/direct", {"phone": phone_of(victim)})
    unused = client.post("/api/v1/rooms/direct", {"phone": new_phone()})
    # A message request looks exactly like an invite to a number no one uses.
    assert (asked.status_code, unused.status_code) == (202, 202)
    assert _invite_shape(asked.json()) == _invite_shape(unused.json())
    assert "Нууц" not in asked.content.decode()
    assert not Room.objects.exists()
    assert client.get("/api/v1/rooms").json() == []
    # The victim is asked, with the asker's name, and says no; the attacker is not told.
    victim_client = client_for(victim)
    invitation = victim_client.get("/api/v1/invitations").json()
    assert [(i["id"], i["from_name"]) for i in invitation] == [(asked.json()["id"], "Халдагч")]
    declined = victim_client.post(f"/api/v1/invitations/{asked.json()['id']}/decline")
    assert declined.status_code == 204
    assert victim_client.get("/api/v1/invitations").json() == []
    assert asked.json()["id"] in [i["id"] for i in client.get("/api/v1/invites").json()]
    # Asking again changes nothing and does not bother the victim again.
    again = client.post("/api/v1/rooms/direct", {"phone": phone_of(victim)})
    assert (again.status_code, again.json()["id"]) == (202, asked.json()["id"])
    assert Notification.objects.filter(user=victim, category="chat").count() == 1
    assert not Room.objects.exists()


def test_a_group_owner_cannot_pull_strangers_in(chat_user, client_for) -> None:
    owner, friend = chat_user("Эзэн"), chat_user("Найз")
    strangers = [chat_user(f"Танихгүй {n}") for n in range(3)]
    direct_room(owner, friend)
    unused = new_phone()
    created = client_for(owner).post("/api/v1/rooms/groups", {
        "name": "Хямдрал", "phones": [phone_of(friend), *map(phone_of, strangers), unused]})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["room"]["member_count"] == 2  # the owner and their contact only
    shapes = {str(_invite_shape(p)) for p in body["pending"]}
    assert len(body["pending"]) == 4 and len(shapes) == 1  # nothing tells them apart
    # Each stranger decides.
    yes, no, _ = (client_for(s) for s in strangers)
    invitation = yes.get("/api/v1/invitations").json()[0]
    assert (invitation["kind"], invitation["room_name"], invitation["from_name"]) == (
        "group", "Хямдрал", "Эзэн")
    accepted = yes.post(f"/api/v1/invitations/{invitation['id']}/accept")
    assert accepted.status_code == 200
    retried = yes.post(f"/api/v1/invitations/{invitation['id']}/accept")  # a retry: the same
    assert (retried.status_code, retried.json()["id"]) == (200, accepted.json()["id"])
    refused = no.get("/api/v1/invitations").json()[0]["id"]
    assert no.post(f"/api/v1/invitations/{refused}/decline").status_code == 204
    assert no.post(f"/api/v1/invitations/{refused}/accept").status_code == 404
    room_id = body["room"]["id"]
    assert sorted(m["user_id"] for m in client_for(owner).get(
        f"/api/v1/rooms/{room_id}/members").json()) == sorted(
        [owner.pk, friend.pk, strangers[0].pk])
    # An invitation is for its invitee only.
    assert client_for(friend).post(f"/api/v1/invitations/{refused}/accept").status_code == 404


def test_a_plain_member_cannot_test_which_numbers_are_in_the_group(chat_user,
                                                                  client_for) -> None:
    owner, member, other_member, outsider = (chat_user() for _ in range(4))
    room = group(owner, member, other_member)
    client = client_for(member)
    answers = {(r.status_code, r.content) for r in (
        client.post(f"/api/v1/rooms/{room.pk}/members", {"phone": phone})
        for phone in (phone_of(other_member), phone_of(outsider), new_phone()))}
    assert len(answers) == 1 and next(iter(answers))[0] == 403
    assert not PendingInvite.objects.filter(inviter=member).exists()


def test_contact_discovery_is_rate_limited_for_every_account(chat_user, client_for,
                                                             settings) -> None:
    settings.SONOR_CHAT_DISCOVERY_PER_HOUR = 5
    veteran = chat_user()
    User.objects.filter(pk=veteran.pk).update(created_at=timezone.now() - timedelta(days=3650))
    client = client_for(veteran)
    codes = [client.post("/api/v1/rooms/direct", {"phone": new_phone()}).status_code
             for _ in range(6)]
    assert codes == [202] * 5 + [429]
    # A group of many numbers is as many look-ups: refused whole, nothing created.
    settings.SONOR_CHAT_DISCOVERY_PER_HOUR = 100
    cache.clear()
    numbers = [new_phone() for _ in range(101)]
    many = client.post("/api/v1/rooms/groups", {"name": "Спам", "phones": numbers})
    assert many.status_code == 429
    assert not Room.objects.exists()


def test_asking_back_accepts_a_message_request(chat_user) -> None:
    bat, saraa = chat_user("Бат"), chat_user("Сараа")
    request = chat_rooms.room_direct_get_or_create(user=bat, phone=phone_of(saraa))
    assert isinstance(request, PendingInvite)
    # Saraa knows Bat's number and asks him too: both said yes, the room opens.
    room = chat_rooms.room_direct_get_or_create(user=saraa, phone=phone_of(bat))
    assert isinstance(room, Room) and room.kind == "direct"
    request.refresh_from_db()
    assert (request.resolved_user_id, request.room_id) == (saraa.pk, room.pk)
    assert chat_rooms.room_direct_get_or_create(user=bat, phone=phone_of(saraa)) == room
