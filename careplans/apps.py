from django.apps import AppConfig
from django.conf import settings


class CareplansConfig(AppConfig):
    name = "careplans"

    def ready(self) -> None:
        from . import tracking

        tracking.register()
        if settings.FHIR_WORKER == "embedded":
            from . import jobs

            jobs.register_embedded()
