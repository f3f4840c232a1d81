"""The cache backend: Redis that, when it cannot be reached, acts as an empty cache.

The cache holds only what may be lost: sign-in rate limits and used one-time codes (django-
allauth), the enrolment throttle. With plain RedisCache every one of those reads raises while
Redis is down, so nobody could sign in: a limit on abuse would become an outage. Unreachable,
this backend answers as a cache that holds nothing and keeps nothing (a read misses, `add`
stores "successfully", a write is dropped), and says so in the log; the limits apply again
as soon as Redis answers.

Only the failures of reaching Redis are absorbed; any other error of the cache (a wrong
command, a value that does not decode) still raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


def _unreachable(operation: str, error: Exception) -> None:
    logger.warning("cache unreachable, %s skipped as if the cache were empty: %s", operation, error)


class ResilientRedisCache(RedisCache):
    """RedisCache, answering as an empty cache while Redis cannot be reached."""

    def add(
        self, key: Any, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        try:
            return bool(super().add(key, value, timeout, version))
        except UNREACHABLE as error:
            # An empty cache takes any new key: a lock is taken, a one-time code is unused.
            # True, not False, although nothing was stored: django-allauth takes its rate-limit
            # lock with `add`, and treats a lock it cannot take as the limit reached, which would
            # refuse every sign-in. The price: during the outage a TOTP code is not remembered
            # as used, so one seen with the password could be replayed within its 30 seconds.
            _unreachable("add", error)
            return True

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        try:
            return super().get(key, default, version)
        except UNREACHABLE as error:
            _unreachable("get", error)
            return default

    def set(
        self, key: Any, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        try:
            super().set(key, value, timeout, version)
        except UNREACHABLE as error:
            _unreachable("set", error)

    def touch(self, key: Any, timeout: float | None = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        try:
            return bool(super().touch(key, timeout, version))
        except UNREACHABLE as error:
            _unreachable("touch", error)
            return False

    def delete(self, key: Any, version: Any = None) -> bool:
        try:
            return bool(super().delete(key, version))
        except UNREACHABLE as error:
            _unreachable("delete", error)
            return False

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        try:
            return dict(super().get_many(keys, version))
        except UNREACHABLE as error:
            _unreachable("get_many", error)
            return {}

    def has_key(self, key: Any, version: Any = None) -> bool:
        try:
            return bool(super().has_key(key, version))
        except UNREACHABLE as error:
            _unreachable("has_key", error)
            return False

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        try:
            return int(super().incr(key, delta, version))
        except UNREACHABLE as error:
            # What the cache API says of a key it does not hold.
            _unreachable("incr", error)
            raise ValueError(f"Key '{key}' not found (the cache is unreachable)") from error

    def set_many(
        self, data: dict[Any, Any], timeout: float | None = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        try:
            return list(super().set_many(data, timeout, version))
        except UNREACHABLE as error:
            _unreachable("set_many", error)
            return []

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        try:
            super().delete_many(keys, version)
        except UNREACHABLE as error:
            _unreachable("delete_many", error)

    def clear(self) -> None:
        try:
            super().clear()
        except UNREACHABLE as error:
            _unreachable("clear", error)
