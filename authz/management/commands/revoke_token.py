"""`python manage.py revoke_token TOKEN_OR_ID`: revoke an API token by its secret or its id.

Exit status 0 when the token is (or already was) revoked, 2 when there is no such token.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from authz import tokens


class Command(BaseCommand):
    help = "Revoke an API token, given the token itself (fpt_...) or its id."

    def add_arguments(self, parser):
        parser.add_argument("token", help="The token (fpt_...) or its numeric id.")

    def handle(self, *args, **options):
        try:
            token = tokens.revoke(options["token"])
        except tokens.TokenError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        self.stdout.write(f"Revoked token {token.pk} ({token.hint}…, role {token.role}).")
