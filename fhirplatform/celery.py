"""Celery application. In the embedded default tasks run eagerly in-process (CELERY_TASK_ALWAYS_EAGER)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhirplatform.settings.local")

app = Celery("fhirplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
