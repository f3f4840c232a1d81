"""WSGI entry point for production servers."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
application = get_wsgi_application()

# Everything loaded so far lives as long as the process: keep it out of garbage collection, so
# full collections stay short and rare under load (bench/fetch.py measured their pauses in p99).
gc.freeze()
