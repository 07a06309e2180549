"""Expectations taken from SPEC, shared by the tests of more than one signal."""

from __future__ import annotations

# Event names (a span's name, a log record's event name) and the user_activity.event_type
# SPEC §6 gives each.
ACTIVITIES = [
    ("user.login", "login"),
    ("user.logout", "logout"),
    ("user.signup", "signup"),
    ("session.start", "session_start"),
    ("session.end", "session_end"),
]
