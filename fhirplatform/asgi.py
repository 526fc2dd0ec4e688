"""ASGI entry point (daphne): HTTP now; WebSocket routes arrive with subscriptions."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhirplatform.settings.local")
application = get_asgi_application()
