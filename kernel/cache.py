"""The Redis cache backend of both caches (``default``: rate limits and lockouts;
``callpath``: kernel/generations.py): Django's, with one lasting client per process."""

from __future__ import annotations

import os

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _Client(RedisCacheClient):
    """Django's Redis client makes a redis-py client (and its table of ~200 response
    callbacks) for every command, which costs more than the round trip on the call path
    and on every rate-limited request. One per connection pool and process is enough,
    holding one connection of its own: a command then skips the pool's checkout and its
    probe for unread data (a system call each), a third of a round trip's cost. redis-py
    serializes the threads that share it, and drops the connection after any error."""

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        clients = self.__dict__.setdefault("_clients", {})
        mine = (id(pool), os.getpid())  # a forked child makes its own
        if mine not in clients:
            clients[mine] = self._client(  # type: ignore[attr-defined]
                connection_pool=pool, single_connection_client=True
            )
        return clients[mine]


class LastingRedisCache(RedisCache):
    """Django's Redis cache with a lasting client (``_Client``)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _Client
