"""The chat REST API (/api/v1/rooms..., blocks, reports, invites) for apps outside the socket."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatserver.chat import messages as chat_messages
from chatserver.chat.models import Block, Report, Room, RoomEvent
from chatserver.core import protocol
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, group, new_phone, phone_of, send

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


@pytest.fixture
def client_for(make_api_client, make_token):  # type: ignore[no-untyped-def]
    return lambda user: make_api_client(make_token(user))


def test_room_list_has_last_message_and_unread_counts(chat_user, client_for) -> None:
    me, a, b = chat_user("Би"), chat_user("Ану"), chat_user("Болд")
    with_a = direct_room(me, a)
    team = group(b, me, a, name="Баг")
    send(a, with_a, "first")
    last = send(a, with_a, "second")
    send(b, team, "team news")
    response = client_for(me).get("/api/v1/rooms")
    assert response.status_code == 200, response.content
    rooms = response.json()
    assert [r["id"] for r in rooms] == [team.pk, with_a.pk]  # most recent first
    team_out, direct_out = rooms
    assert (team_out["kind"], team_out["name"], team_out["role"], team_out["unread"],
            team_out["member_count"], team_out["peer"]) == ("group", "Баг", "member", 1, 3, None)
    assert team_out["last_message"]["text"] == "team news"
    assert direct_out["unread"] == 2
    assert protocol.ChatMessage.model_validate(direct_out["last_message"]).id == last.pk
    assert direct_out["peer"] == {"id": a.pk, "name": "Ану", "phone": phone_of(a),
                                  "phone_status": "verified"}
    assert (direct_out["last_seq"], direct_out["last_read_seq"]) == (4, 0)


def test_room_list_costs_the_same_queries_for_many_rooms(chat_user, client_for) -> None:
    me = chat_user()
    client = client_for(me)
    client.get("/api/v1/rooms")  # warm up (session last-seen write, ...)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/rooms").status_code == 200
        return len(captured)

    for _ in range(2):
        other = chat_user()
        send(other, direct_room(other, me))
    few = queries()
    for _ in range(6):
        other = chat_user()
        send(other, direct_room(other, me))
        group(other, me)
    assert queries() == few


def test_direct_room_201_and_held_invite_202(chat_user, client_for) -> None:
    me, other = chat_user(), chat_user("Бусад")
    client = client_for(me)
    asked = client.post("/api/v1/rooms/direct", {"phone": phone_of(other)})
    assert asked.status_code == 202, asked.content  # a message request
    invitation = client_for(other).get("/api/v1/invitations").json()[0]
    assert invitation["id"] == asked.json()["id"]
    accepted = client_for(other).post(f"/api/v1/invitations/{invitation['id']}/accept")
    assert accepted.status_code == 200, accepted.content
    again = client.post("/api/v1/rooms/direct", {"phone": phone_of(other)})
    assert again.status_code == 201 and again.json()["id"] == accepted.json()["id"]
    assert again.json()["peer"]["name"] == "Бусад"
    number = new_phone()
    held = client.post("/api/v1/rooms/direct", {"phone": number})
    assert held.status_code == 202, held.content
    assert held.json() | {"id": 0, "created_at": ""} == {
        "id": 0, "kind": "direct", "phone": number, "room": None, "created_at": "",
        "status": "pending"}
    assert [i["phone"] for i in client.get("/api/v1/invites").json()] == [number]
    assert client.delete(f"/api/v1/invites/{held.json()['id']}").status_code == 204
    assert client.get("/api/v1/invites").json() == []
    bad = client.post("/api/v1/rooms/direct", {"phone": "12"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_phone_number")


def test_unverified_user_is_refused_with_phone_not_verified(make_citizen, chat_user,
                                                            client_for) -> None:
    response = client_for(make_citizen()).post("/api/v1/rooms/direct",
                                               {"phone": phone_of(chat_user())})
    assert (response.status_code, response.json()["code"]) == (403, "phone_not_verified")


def test_group_lifecycle_over_rest(chat_user, client_for) -> None:
    owner, a, b = chat_user("Эзэн"), chat_user("А"), chat_user("Б")
    direct_room(owner, a)
    direct_room(owner, b)  # contacts: added at once
    client = client_for(owner)
    number = new_phone()
    created = client.post("/api/v1/rooms/groups",
                          {"name": "Хороо", "phones": [phone_of(a), number]})
    assert created.status_code == 201, created.content
    room_id = created.json()["room"]["id"]
    assert created.json()["room"]["member_count"] == 2
    assert [p["phone"] for p in created.json()["pending"]] == [number]
    assert created.json()["pending"][0]["room"] == room_id

    added = client.post(f"/api/v1/rooms/{room_id}/members", {"phone": phone_of(b)})
    assert added.status_code == 201 and added.json()["user_id"] == b.pk
    held = client.post(f"/api/v1/rooms/{room_id}/members", {"phone": new_phone()})
    assert held.status_code == 202
    promoted = client.post(f"/api/v1/rooms/{room_id}/members/{a.pk}/role", {"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    renamed = client.request("PATCH", f"/api/v1/rooms/{room_id}",
                             {"name": "Шинэ хороо"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Шинэ хороо"
    members = client.get(f"/api/v1/rooms/{room_id}/members").json()
    assert [(m["user_id"], m["role"]) for m in members] == sorted(
        [(owner.pk, "owner"), (a.pk, "admin"), (b.pk, "member")])
    assert "phone" not in members[0]
    assert client.delete(f"/api/v1/rooms/{room_id}/members/{b.pk}").status_code == 204
    assert client_for(a).post(f"/api/v1/rooms/{room_id}/leave").status_code == 204
    detail = client.get(f"/api/v1/rooms/{room_id}").json()
    assert detail["member_count"] == 1
    # The whole story is in the stream.
    page = client.get(f"/api/v1/rooms/{room_id}/messages?after_seq=0&limit=200").json()
    assert [(m["type"], m.get("action")) for m in page["messages"]] == [
        ("chat.room", None), ("chat.member", "joined"), ("chat.member", "joined"),
        ("chat.member", "joined"), ("chat.member", "role"), ("chat.room", None),
        ("chat.member", "removed"), ("chat.member", "left")]


def test_membership_is_checked_on_every_operation(chat_user, client_for) -> None:
    owner, member, outsider = chat_user(), chat_user(), chat_user()
    room = group(owner, member)
    message = send(owner, room)
    client = client_for(outsider)
    for method, path, body in [
        ("get", f"/api/v1/rooms/{room.pk}", None),
        ("get", f"/api/v1/rooms/{room.pk}/messages", None),
        ("get", f"/api/v1/rooms/{room.pk}/members", None),
        ("post", f"/api/v1/rooms/{room.pk}/messages", {"client_msg_id": "x", "text": "hi"}),
        ("patch", f"/api/v1/rooms/{room.pk}/messages/{message.pk}", {"text": "x"}),
        ("delete", f"/api/v1/rooms/{room.pk}/messages/{message.pk}", None),
        ("post", f"/api/v1/rooms/{room.pk}/read", {"seq": 1}),
        ("post", f"/api/v1/rooms/{room.pk}/members", {"phone": phone_of(outsider)}),
        ("delete", f"/api/v1/rooms/{room.pk}/members/{member.pk}", None),
        ("post", f"/api/v1/rooms/{room.pk}/members/{member.pk}/role", {"role": "admin"}),
        ("patch", f"/api/v1/rooms/{room.pk}", {"name": "x"}),
        ("post", f"/api/v1/rooms/{room.pk}/leave", None),
        ("get", "/api/v1/rooms/999999", None),
    ]:
        if body is None:
            response = client.request(method.upper(), path)
        else:
            response = client.request(method.upper(), path, body)
        assert (response.status_code, response.json()["code"]) == (404, "not_member"), (
            method, path, response.content)
    assert Room.objects.get(pk=room.pk).last_seq == 4


def test_messages_send_history_read_edit_delete_over_rest(chat_user, client_for) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    client_a, client_b = client_for(a), client_for(b)
    sent = client_a.post(f"/api/v1/rooms/{room.pk}/messages",
                         {"client_msg_id": "r1", "text": "REST-ээр"})
    assert sent.status_code == 201 and sent.json()["seq"] == 3
    resent = client_a.post(f"/api/v1/rooms/{room.pk}/messages",
                           {"client_msg_id": "r1", "text": "REST-ээр"})
    assert resent.json() == sent.json()
    pii = client_a.post(f"/api/v1/rooms/{room.pk}/messages",
                        {"client_msg_id": "r2", "text": "E1234567"})
    assert (pii.status_code, pii.json()["code"], pii.json()["extra"]) == (
        422, "pii_warning", {"kinds": ["passport_number"]})
    message_id = sent.json()["message_id"]
    edited = client_a.request("PATCH", f"/api/v1/rooms/{room.pk}/messages/{message_id}",
                              {"text": "засв"})
    assert edited.status_code == 200 and edited.json()["seq"] == 4
    assert client_b.get("/api/v1/rooms").json()[0]["unread"] == 1
    assert client_b.post(f"/api/v1/rooms/{room.pk}/read", {"seq": 4}).json() == {"unread": 0}
    assert client_a.delete(f"/api/v1/rooms/{room.pk}/messages/{message_id}").status_code == 204
    page = client_b.get(f"/api/v1/rooms/{room.pk}/messages").json()
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5] and not page["has_more"]
    assert page["messages"][2]["deleted"] and page["messages"][2]["text"] == ""
    older = client_b.get(f"/api/v1/rooms/{room.pk}/messages?before_seq=3&limit=1").json()
    assert [m["seq"] for m in older["messages"]] == [2] and older["has_more"]


def test_recycled_number_gives_its_new_owner_none_of_the_old_rooms(
        chat_user, make_citizen, client_for, make_api_client, make_token, sms_code) -> None:
    a, c = chat_user("Анхны эзэн"), chat_user("Найз")
    room = direct_room(c, a)  # c reached a by a's number
    send(c, room, "сайн уу")
    number = phone_of(a)
    # The operator reassigned the number; its new owner verifies it through the real flow.
    b = make_citizen(name="Шинэ эзэн")
    client_b = client_for(b)
    assert client_b.post("/api/v1/phones", {"phone": number}).status_code == 202
    verified = client_b.post("/api/v1/phones/verify", {"phone": number, "code": sms_code(number)})
    assert verified.status_code == 200, verified.content

    assert client_b.get("/api/v1/rooms").json() == []
    assert client_b.get(f"/api/v1/rooms/{room.pk}").status_code == 404
    assert client_b.get(f"/api/v1/rooms/{room.pk}/messages").status_code == 404
    seen_by_c = client_for(c).get("/api/v1/rooms").json()
    assert [r["id"] for r in seen_by_c] == [room.pk]
    assert seen_by_c[0]["peer"] == {"id": a.pk, "name": "Анхны эзэн", "phone": None,
                                    "phone_status": "changed_hands"}
    # Asking for the number now asks its new owner, for a new room.
    asked = client_for(c).post("/api/v1/rooms/direct", {"phone": number})
    assert asked.status_code == 202
    new_room = client_b.post(f"/api/v1/invitations/{asked.json()['id']}/accept")
    assert new_room.status_code == 200 and new_room.json()["id"] != room.pk
    assert client_for(c).get(f"/api/v1/rooms/{new_room.json()['id']}").json()["peer"]["id"] \
        == b.pk


def test_blocks_and_reports(chat_user, client_for) -> None:
    me, spammer = chat_user(), chat_user()
    room = direct_room(spammer, me)
    message = send(spammer, room, "Хямдралтай зээл!")
    client = client_for(me)
    blocked = client.post("/api/v1/blocks", {"user_id": spammer.pk})
    assert blocked.status_code == 201 and blocked.json()["user_id"] == spammer.pk
    assert client.post("/api/v1/blocks", {"user_id": spammer.pk}).status_code == 201
    assert Block.objects.count() == 1
    assert [b["user_id"] for b in client.get("/api/v1/blocks").json()] == [spammer.pk]
    reported = client.post("/api/v1/reports", {"message_id": message.pk, "reason": "спам"})
    assert reported.status_code == 201, reported.content
    report = Report.objects.get(pk=reported.json()["id"])
    assert (report.reported_user_id, report.text, report.event_id) == (
        spammer.pk, "Хямдралтай зээл!", message.pk)
    both = client.post("/api/v1/reports", {"message_id": 1, "user_id": 1, "reason": "x"})
    assert both.status_code == 422
    user_report = client.post("/api/v1/reports", {"user_id": spammer.pk, "reason": "робот"})
    assert user_report.status_code == 201
    assert client.delete(f"/api/v1/blocks/{spammer.pk}").status_code == 204
    assert client.delete(f"/api/v1/blocks/{spammer.pk}").status_code == 404


def test_api_docs_list_the_chat_routes(client_for, chat_user) -> None:
    schema = client_for(chat_user()).get("/api/v1/openapi.json").json()
    for path in ("/api/v1/rooms", "/api/v1/rooms/direct", "/api/v1/rooms/groups",
                 "/api/v1/rooms/{room_id}/messages", "/api/v1/blocks", "/api/v1/reports"):
        assert path in schema["paths"], path


def test_data_export_has_the_users_chat(chat_user, client_for) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(b, a)
    send(a, room, "миний мессеж")
    gone = send(a, room, "устгасан")
    chat_messages.message_delete(user=a, room_id=room.pk, message_id=gone.pk)
    send(b, room, "түүний мессеж")
    response = client_for(a).get("/api/v1/export")
    assert response.status_code == 200, response.content
    chat = response.json()["chat"]
    assert [r["room"] for r in chat["rooms"]] == [room.pk]
    assert [m["text"] for m in chat["messages_sent"]] == ["миний мессеж", ""]
    assert RoomEvent.objects.filter(room=room, kind="message").count() == 3
    # b asked a (the room opened when a accepted): a's export shows the invitation received.
    assert [(i["from_user"], i["kind"]) for i in chat["invitations"]] == [(b.pk, "direct")]
