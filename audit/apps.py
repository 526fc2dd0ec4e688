from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        post_migrate.connect(_apply_roles, sender=self)


def _apply_roles(sender, using: str = "default", **kwargs) -> None:
    """After `migrate` on PostgreSQL, with FHIR_DB_APP_ROLE set: the application role's privileges
    (audit/roles.py), so that tables created by this migration run are covered too."""
    from django.conf import settings
    from django.db import connections

    if not settings.FHIR_DB_APP_ROLE or connections[using].vendor != "postgresql":
        return
    from .roles import apply, grants

    apply(grants(settings.FHIR_DB_APP_ROLE, settings.FHIR_DB_ARCHIVER_ROLE or None, using), using)
