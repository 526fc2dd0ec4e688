"""`python manage.py issue_token --role ROLE [--identity Type/id] [--one-time] [--ttl S] [--label T]`

Mints an API token and prints only the secret on stdout (so `TOKEN=$(python manage.py issue_token
--role Admin)` works). Exit status 0 when minted, 2 on bad input.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from authz.models import ApiToken
from interactions import console
from resources.outcomes import FhirError


class Command(BaseCommand):
    help = "Mint an API token for a role (and optionally a FHIR identity); prints only the token."

    def add_arguments(self, parser):
        parser.add_argument("--role", required=True, help="Role the token acts as, e.g. Admin or Patient.")
        parser.add_argument(
            "--identity",
            default="",
            help="FHIR identity the token stands for: Patient/id, Practitioner/id, RelatedPerson/id or Device/id.",
        )
        parser.add_argument(
            "--one-time",
            action="store_true",
            help="A token that authenticates one request, e.g. POST /fhir/$exchange-token for a durable one.",
        )
        parser.add_argument(
            "--ttl",
            type=int,
            default=None,
            help=(
                "Lifetime in seconds, 1 to FHIR_TOKEN_MAX_LIFETIME (default: FHIR_API_TOKEN_TTL, or "
                "FHIR_ONE_TIME_TOKEN_TTL for --one-time). Every token expires."
            ),
        )
        parser.add_argument("--label", default="", help="A note shown in the console and the audit log.")

    def handle(self, *args, **options):
        ctx = console.operator("command line", transport="command", action="issue_token")
        try:
            minted = console.issue_token(
                ctx,
                role=options["role"],
                identity=options["identity"],
                kind=ApiToken.ONE_TIME if options["one_time"] else ApiToken.DURABLE,
                ttl=options["ttl"],
                label=options["label"],
            )
        except FhirError as exc:
            raise CommandError(exc.issues[0].diagnostics, returncode=2) from exc
        token, secret = minted.token, minted.secret
        self.stdout.write(secret)
        self.stderr.write(
            f"token id {token.pk}, role {token.role}"
            + (f", {token.identity}" if token.identity else "")
            + f", expires {token.expires.isoformat()}"
        )
