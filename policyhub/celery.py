"""The Celery application: Redis broker from REDIS_URL, tasks discovered in every app."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")

app = Celery("policyhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
