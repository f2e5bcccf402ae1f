"""Chat limits, read from django.conf.settings at call time (defaults in parentheses;
chatserver/settings.py reads each from the environment):
SONOR_CHAT_MEMBER_LIMIT           members per group (10,000)
SONOR_CHAT_GROUP_INITIAL_MAX      phone numbers in one group-create request (200)
SONOR_CHAT_SEND_RATE              messages a user may send per window (30)
SONOR_CHAT_SEND_WINDOW            that window in seconds (10)
SONOR_CHAT_NEW_ACCOUNT_DAYS       an account younger than this is "new" (7)
SONOR_CHAT_NEW_ACCOUNT_DIRECT_PER_DAY  new direct rooms or invites a new account may start a
                                  day (5)
SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY    group members a new account may add a day (20)
SONOR_CHAT_INVITE_TTL_DAYS        an invitation can be answered only this long (30)
SONOR_CHAT_DISCOVERY_PER_HOUR     numbers of non-contacts a user may look up an hour (direct
                                  rooms, group creation, member adds; every account) (60)
SONOR_CHAT_OPEN_INVITES_MAX       held invites one user may have open (50)
SONOR_CHAT_REPORTS_PER_HOUR       reports a user may file an hour (20)
SONOR_CHAT_USER_ROUTES_PER_HOUR   requests naming a user id (block, unblock, report a user,
                                  remove a member, set a role) a user may make an hour (100)
SONOR_CHAT_RECEIPTS_AGGREGATE_ABOVE  groups larger than this get aggregate read counts (50)
SONOR_CHAT_RECEIPTS_AGGREGATE_SECONDS  at most one aggregate count per room this often (2)
SONOR_CHAT_TYPING_INTERVAL        seconds between forwarded typing frames per socket and room (3)
SONOR_CHAT_HISTORY_MAX            events in one history page (100 over REST, 50 on the socket)
SONOR_CHAT_PRESENCE_TTL           seconds a socket counts as live without talking (150)
SONOR_CHAT_PRESENCE_FLUSH         seconds a process collects presence changes before writing (1)
SONOR_CHAT_SOCKET_BUFFER          room frames a socket may have waiting; beyond, it is closed
                                  (4408: resume) and the frames counted as dropped (1000)
SONOR_RESUME_LIMIT                (shared with the inbox) events per stream in one resume
SONOR_RESUME_TOTAL_LIMIT          room events in one resume, all rooms together (5,000)
"""

from typing import Any

from django.conf import settings


def chat_setting(name: str) -> Any:
    """Read at call time, so that tests and operators can change a limit."""
    return getattr(settings, name)
