"""The Redis clients of the call path (kernel/cache.py, callauth/records.py): one per
process, each holding one connection of its own."""

import multiprocessing
from unittest.mock import patch

import pytest
import redis
from django.core.cache import caches

from kernel import generations
from telephony.callauth import records

pytestmark = pytest.mark.skipif(
    not generations.enabled(), reason="the call path's cache needs CACHE_URL"
)


@pytest.fixture(autouse=True)
def _stream_on_the_broker(settings):
    settings.CALL_RECORD_STREAM_URL = settings.CELERY_BROKER_URL
    if not settings.CALL_RECORD_STREAM_URL.startswith("redis"):
        pytest.skip("the record stream needs a Redis broker")


def _cache_client() -> redis.Redis:
    return caches[generations.CACHE]._cache.get_client()  # type: ignore[attr-defined]


def _stream_client() -> redis.Redis:
    stream = records._stream()
    assert stream is not None
    return stream


CLIENTS = [pytest.param(_cache_client, id="cache"), pytest.param(_stream_client, id="stream")]


def _local_port(client: redis.Redis) -> int:
    connection = client.connection
    assert connection is not None and connection._sock is not None
    return connection._sock.getsockname()[1]


def _child_reads(client_of) -> tuple[bool, int]:
    """In a forked child: a command through the client, and the connection it went on."""
    client = client_of()
    return client.exists("fork-check") == 1, _local_port(client)


@pytest.mark.parametrize("client_of", CLIENTS)
def test_commands_go_on_the_clients_own_connection(client_of):
    client = client_of()
    assert client is client_of()
    client.set("held", 1)
    held = client.connection
    # Nothing is checked out of the pool (and probed for unread data) per command.
    with patch.object(client.connection_pool, "get_connection") as checkout:
        assert client.mget(["held", "missing"]) == [b"1", None]
        client.set("held", 2)
    checkout.assert_not_called()
    assert client.connection is held and held._sock is not None


@pytest.mark.parametrize("client_of", CLIENTS)
def test_a_forked_process_talks_on_a_connection_of_its_own(client_of):
    """gunicorn and Celery fork their workers: a child that wrote on its parent's
    connection would read the other's answers."""
    client = client_of()
    client.set("fork-check", 7)
    parent_port = _local_port(client)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        found, child_port = pool.apply_async(_child_reads, (client_of,)).get(timeout=60)
    assert found
    assert child_port != parent_port
    assert _local_port(client) == parent_port  # the parent's own goes on
