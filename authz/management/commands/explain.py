"""`python manage.py explain --role R [--identity Type/id] --operation OP Type[/id]`

Prints how the rule chain decides an operation for a caller, rule by rule, without running it.
Exit status 0, or 2 on bad input.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from authz.context import AccessContext
from authz.explain import explain
from authz.models import IDENTITY_TYPES
from authz.rules import OPERATIONS
from resources.definitions import resource_types


class Command(BaseCommand):
    help = "Explain which access rules allow an operation for a role and identity, and why."

    def add_arguments(self, parser):
        parser.add_argument("target", help="Type (for a search) or Type/id (for one resource).")
        parser.add_argument("--role", required=True, help="Role of the caller, e.g. Patient.")
        parser.add_argument("--identity", default="", help="Identity of the caller, e.g. Patient/123.")
        parser.add_argument("--operation", required=True, choices=OPERATIONS, help="Operation to explain.")

    def handle(self, *args, **options):
        resource_type, _, fhir_id = options["target"].partition("/")
        if resource_type not in resource_types():
            raise CommandError(f"Unknown resource type '{resource_type}'", returncode=2)
        identity = options["identity"]
        if identity and identity.partition("/")[0] not in IDENTITY_TYPES:
            raise CommandError(
                f"'{identity}' is not Patient/, Practitioner/, RelatedPerson/ or Device/", returncode=2
            )
        ctx = AccessContext(role=options["role"], identity=identity or None, method="explain")
        for issue in explain(ctx, options["operation"], resource_type, fhir_id or None):
            self.stdout.write(issue.diagnostics)
