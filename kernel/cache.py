"""The Redis cache backend of both caches (``default``: rate limits and lockouts;
``callpath``: kernel/generations.py): Django's, with one lasting client per process."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _Client(RedisCacheClient):
    """Django's Redis client makes a redis-py client (and its table of ~200 response
    callbacks) for every command, which costs more than the round trip on the call path
    and on every rate-limited request. One per connection pool and process is enough:
    redis-py clients are thread-safe."""

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        clients = self.__dict__.setdefault("_clients", {})
        if id(pool) not in clients:
            clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return clients[id(pool)]


class LastingRedisCache(RedisCache):
    """Django's Redis cache with a lasting client (``_Client``)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _Client
