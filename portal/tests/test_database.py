"""The PostgreSQL backend's health check (kernel.postgresql): skipped for a connection
that has just answered, and a connection the database dropped meanwhile costs one
request."""

import pytest
from django.db import OperationalError, connection, connections

from kernel.postgresql import base

pytestmark = pytest.mark.django_db


@pytest.fixture
def wrapper(monkeypatch):
    """A connection of its own (the test's is inside the test's transaction), with its
    health checks counted."""
    if connection.vendor != "postgresql":
        pytest.skip("the backend is PostgreSQL's")
    own = connections.create_connection("default")
    checks = []
    usable = own.is_usable
    monkeypatch.setattr(own, "is_usable", lambda: checks.append(1) or usable())
    own.checks = checks
    yield own
    own.close()


def request(wrapper, sql="SELECT 1"):
    """What Django does around a request (or the worker around a task) with one query."""
    wrapper.close_if_unusable_or_obsolete()
    try:
        with wrapper.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        wrapper.close_if_unusable_or_obsolete()


def test_a_connection_that_has_just_answered_is_not_checked_again(wrapper):
    assert wrapper.settings_dict["CONN_HEALTH_CHECKS"]
    request(wrapper)  # connects: nothing to check yet
    request(wrapper)
    request(wrapper)
    assert wrapper.checks == []


def test_a_connection_idle_for_longer_is_checked_before_its_next_request(wrapper):
    request(wrapper)
    wrapper.answered_at -= base.ALIVE_SECONDS
    request(wrapper)
    assert wrapper.checks == [1]
    request(wrapper)  # it has answered again since
    assert wrapper.checks == [1]


def test_a_connection_dropped_within_the_window_fails_one_request_and_is_replaced(wrapper):
    request(wrapper)
    pid = wrapper.connection.get_backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    with pytest.raises(OperationalError):
        request(wrapper)
    assert wrapper.connection is None  # dropped as the failed request ended

    assert request(wrapper, "SELECT pg_backend_pid()") != pid
