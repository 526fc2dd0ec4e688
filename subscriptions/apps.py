from django.apps import AppConfig
from django.conf import settings


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"

    def ready(self) -> None:
        from . import outbox, state

        state.register()
        outbox.register()
        if settings.FHIR_WORKER == "celery":
            from . import tasks

            outbox.on_wake(tasks.wake)
