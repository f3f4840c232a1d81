"""The cache backend (policyhub/caches.py) with its Redis killed: every call answers as an empty
cache would, at once, instead of raising; once Redis is back it is a cache again. An error other
than failing to reach Redis still raises."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from django.core.cache import cache

from policyhub.settings import redis_cache
from tests.faults.services import RedisServer


def test_an_unreachable_redis_is_an_empty_cache_and_a_reachable_one_a_cache(
    redis_server: RedisServer, settings: Any
) -> None:
    settings.CACHES = {"default": redis_cache(redis_server.url)}
    cache.set("kept", 1)
    assert cache.get("kept") == 1
    cache.set("text", "not a number")
    with pytest.raises(redis.ResponseError):
        cache.incr("text")

    redis_server.kill()
    started = time.monotonic()
    assert cache.get("kept", "missed") == "missed"
    assert cache.get_or_set("kept", 2) == 2
    assert cache.add("lock", True) is True  # an empty cache takes any new key
    cache.set("kept", 3)
    assert cache.get_many(["kept", "text"]) == {}
    assert cache.has_key("kept") is False
    assert cache.touch("kept") is False
    assert cache.delete("kept") is False
    with pytest.raises(ValueError):
        cache.incr("kept")
    with pytest.raises(ValueError):
        cache.decr("kept")
    assert cache.set_many({"a": 1, "b": 2}) == []
    cache.delete_many(["a", "b"])
    cache.clear()
    assert time.monotonic() - started < 2, "an unreachable cache must answer at once"

    redis_server.start()  # back, empty, on the same port
    cache.set("kept", 4)
    assert cache.get("kept") == 4
