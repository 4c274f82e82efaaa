"""The Redis clients of the call path (kernel/cache.py, callauth/records.py): one per
process, each holding one connection of its own."""

import multiprocessing
import os
from unittest.mock import patch

import pytest
import redis
from django.core.cache import caches

from kernel import generations
from telephony.callauth import records

pytestmark = pytest.mark.skipif(
    not generations.enabled(), reason="the call path's cache needs CACHE_URL"
)


def _cache_client():
    return caches[generations.CACHE]._cache.get_client()


def _local_port(client: redis.Redis) -> int:
    connection = client.connection
    assert connection is not None and connection._sock is not None
    return connection._sock.getsockname()[1]


def _child_reads() -> tuple[int, int]:
    """In a forked child: a read through the cache, and the connection it went on."""
    value = caches[generations.CACHE].get("fork-check")
    return value, _local_port(_cache_client())


def test_commands_go_on_the_clients_own_connection():
    cache = caches[generations.CACHE]
    cache.set("held", 1)
    client = _cache_client()
    assert client is _cache_client()
    held = client.connection
    # Nothing is checked out of the pool (and probed for unread data) per command.
    with patch.object(client.connection_pool, "get_connection") as checkout:
        assert cache.get_many(["held", "missing"]) == {"held": 1}
        cache.set("held", 2)
    checkout.assert_not_called()
    assert client.connection is held and held._sock is not None


def test_a_forked_process_reads_on_a_connection_of_its_own():
    """gunicorn and Celery fork their workers: a child that wrote on its parent's
    connection would read the other's answers."""
    caches[generations.CACHE].set("fork-check", 7)
    parent_port = _local_port(_cache_client())
    with multiprocessing.get_context("fork").Pool(1) as pool:
        value, child_port = pool.apply_async(_child_reads).get(timeout=60)
    assert value == 7
    assert child_port != parent_port


def test_the_record_stream_has_one_client_per_process(settings):
    settings.CALL_RECORD_STREAM_URL = settings.CELERY_BROKER_URL
    if not settings.CALL_RECORD_STREAM_URL.startswith("redis"):
        pytest.skip("the record stream needs a Redis broker")
    stream = records._stream()
    assert stream is records._stream()
    stream.ping()
    assert stream.connection is not None
    assert records._connect(settings.CALL_RECORD_STREAM_URL, os.getpid() + 1) is not stream
