"""WSGI entry point (gunicorn in production)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhirplatform.settings.local")
application = get_wsgi_application()

# The embedded mode's background worker (deliveries, periodic jobs) lives in the server process.
from subscriptions.worker import start_embedded  # noqa: E402

start_embedded()
