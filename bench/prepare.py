"""Bench data, written directly into a Sonor database before its server starts.

    SONOR_DATA_DIR=... [DATABASE_URL=...] python -m bench.prepare --users 1000 --out data.json

Run with the server's environment (the harness does). It migrates, EMPTIES the database
(manage.py flush: give the bench a database of its own), then creates citizens with verified
numbers and a session token each, groups of --room-size, one group with every citizen (the
big room; every invitation accepted), and an agency with an API key. Writes them as JSON for
the load generator.
"""

import argparse
import json
import os
import time
from datetime import date, timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--room-size", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not 2 <= args.users <= 10_000:
        parser.error("--users is 2 to 10,000")
    started = time.monotonic()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatserver.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # The bench's citizens are new accounts: let them build big groups here.
    settings.SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY = 10**9
    settings.SONOR_CHAT_GROUP_INITIAL_MAX = args.users
    settings.SONOR_CHAT_DISCOVERY_PER_HOUR = 10**9
    settings.SONOR_CHAT_OPEN_INVITES_MAX = 10**9
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)

    from django.db import connection, transaction
    from django.utils import timezone

    from chatserver.chat.invites import invitation_accept
    from chatserver.chat.rooms import group_create
    from identity.services import _phone_bind, citizen_create, session_create
    from notify.agency_services import agency_create

    def phone(n: int) -> str:
        return f"+97690{n:06d}"

    users, registers = [], []
    for n in range(args.users):
        born = date(1960, 1, 1) + timedelta(days=n)
        user = citizen_create(register_number=f"БН{born:%y%m%d}12", name=f"Bench {n}")
        with transaction.atomic():
            _phone_bind(user=user, e164=phone(n), now=timezone.now())
        users.append(user)
        registers.append(user.register_number)
    tokens = [session_create(user=u, login_method="bench", device_name="bench")[1]
              for u in users]
    def group(name: str, creator: object, numbers: list[str]) -> int:
        created = group_create(creator=creator, name=name, phones=numbers)
        for invite in created.pending:  # strangers to the creator are invited: each says yes
            invitation_accept(user=invite.invitee, invitation_id=invite.pk)
        return int(created.room.pk)

    small_room_of: list[int] = []
    for start in range(0, args.users, args.room_size):
        members = users[start:start + args.room_size]
        room_id = group(f"bench {start}", members[0],
                        [phone(start + i) for i in range(1, len(members))])
        small_room_of.extend([room_id] * len(members))
    big_room_id = group("bench all", users[0], [phone(n) for n in range(1, args.users)])
    _, agency_key = agency_create(name="Bench agency")
    if connection.vendor == "postgresql":
        # Statistics for the tables filled here whose size the runs keep, as autovacuum
        # would gather them after a bulk load (without them the chat batch's sender check
        # was planned for two phone numbers, not a thousand, and took 13 ms for 44 senders).
        # Not the tables the runs add rows to: PostgreSQL plans those by their size on disk
        # until autovacuum analyzes them, whereas statistics taken now would describe them
        # as empty forever where autovacuum is off (see docs/operations.md).
        from chatserver.chat.streams import BLOCK_TABLE, MEMBERSHIP_TABLE, PHONE_TABLE, ROOM_TABLE
        from identity.models import User

        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {User._meta.db_table}, {PHONE_TABLE}, {ROOM_TABLE},"
                           f" {MEMBERSHIP_TABLE}, {BLOCK_TABLE}")
    args.out.write_text(json.dumps({
        "tokens": tokens, "registers": registers, "small_room_of": small_room_of,
        "big_room": big_room_id, "agency_key": agency_key,
        "seconds": round(time.monotonic() - started, 1),
    }))


if __name__ == "__main__":
    main()
