"""WSGI entry point for production servers."""

import gc
import os

from django.core.wsgi import get_wsgi_application

from policyhub.logfilters import redact_server_logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
application = get_wsgi_application()

# The server's own logs (granian's or gunicorn's access log) redacted as Django's are.
redact_server_logs()

# Each web process starts listening (and reads every device) when it boots, not at its first
# fetch: a worker that has served nothing yet can still answer through a database outage.
from policyhub.delivery.cache import cache  # noqa: E402 - needs the app loaded above

cache()

# Everything loaded so far lives as long as the process: keep it out of garbage collection, so
# full collections stay short and rare under load (bench/fetch.py measured their pauses in p99).
gc.freeze()
