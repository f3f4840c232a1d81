from tests.delivery.conftest import enrol, fresh_cache, publish

__all__ = ["enrol", "fresh_cache", "publish"]
