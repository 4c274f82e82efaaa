"""Django's PostgreSQL backend, with a health check that skips a connection which has
just answered.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every
request or task: a round trip each, about an eighth of a web worker's time in a
registration storm. A connection whose last request or task ran its queries without a
connection error less than ALIVE_SECONDS ago is taken as alive, as connection pools
do; should the database have gone away within that window, that one request fails and
its connection is dropped as it ends (README, "Database connections")."""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

ALIVE_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    health_check_done: bool  # Django's, set in its __init__
    answered_at = float("-inf")

    def close_if_unusable_or_obsolete(self) -> None:
        # Django calls this as a request or task ends (and again as the next begins):
        # health_check_done says this one used the connection, errors_occurred whether
        # the connection failed it.
        answered = (
            self.connection is not None and self.health_check_done and not self.errors_occurred
        )
        super().close_if_unusable_or_obsolete()
        if answered and self.connection is not None:
            self.answered_at = time.monotonic()

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and not self.health_check_done
            and time.monotonic() - self.answered_at < ALIVE_SECONDS
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
