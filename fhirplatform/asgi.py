"""ASGI entry point (daphne, and `manage.py runserver`, which is daphne's): Django for HTTP, and the
WebSocket endpoint of R4 Subscriptions at `[base]/websocket` (subscriptions/consumers.py).

No origin check on the WebSocket: sockets authenticate with a bearer token (header or
`bind-with-token`), never with a cookie, so another site's page gains nothing by opening one, and
browser apps served from other origins (SMART apps) must be able to.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhirplatform.settings.local")
# Django is set up first: the consumer's imports reach models.
http_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from subscriptions.consumers import SubscriptionConsumer  # noqa: E402
from subscriptions.worker import start_embedded  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": URLRouter([re_path(r"^fhir/websocket/?$", SubscriptionConsumer.as_asgi())]),
    }
)

# The embedded mode's background worker (deliveries, periodic jobs) lives in the server process, as
# under WSGI (fhirplatform/wsgi.py): `make run` (runserver, daphne's) and daphne without a broker.
# With the in-memory channel layer this is also what lets a delivery reach this process's sockets.
start_embedded()
