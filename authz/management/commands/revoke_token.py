"""`python manage.py revoke_token TOKEN_OR_ID`: revoke an API token by its secret or its id.

Exit status 0 when the token is (or already was) revoked, 2 when there is no such token.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from interactions import console
from resources.outcomes import FhirError


class Command(BaseCommand):
    help = "Revoke an API token, given the token itself (fpt_...) or its id."

    def add_arguments(self, parser):
        parser.add_argument("token", help="The token (fpt_...) or its numeric id.")

    def handle(self, *args, **options):
        ctx = console.operator("command line", transport="command", action="revoke_token")
        try:
            token = console.revoke_token(ctx, token=options["token"])
        except FhirError as exc:
            raise CommandError(exc.issues[0].diagnostics, returncode=2) from exc
        self.stdout.write(f"Revoked token {token.pk} ({token.hint}…, role {token.role}).")
