"""Settings for the servers bench/fetch.py starts: the real settings, with a URLconf that adds
the framework-floor views (bench/fetch_urls.py) to every route of the product."""

from policyhub.settings import *  # noqa: F403

ROOT_URLCONF = "bench.fetch_urls"
