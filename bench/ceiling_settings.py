"""Production settings plus one trivial view, for the framework ceiling.

The bench serves the whole run with this module, so the FHIR API and /bench/ping share one gunicorn
process tree, one middleware stack and one configuration: the ping rate is what this Django stack can do
per request with no FHIR work at all.
"""

from fhirplatform.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.ceiling_urls"
