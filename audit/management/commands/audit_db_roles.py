"""`python manage.py audit_db_roles --app-role ROLE [--archiver-role ROLE] [--execute]`

PostgreSQL only. Prints (or, with --execute, runs) the GRANT/REVOKE statements that let the
application role use the database without being able to change or delete audit rows, and let the
archiver role run audit_archive (audit/roles.py, docs/deployment.md). Run it as the owner of the
tables (the migrator role) after `manage.py migrate`; it is idempotent.

Exit status: 0 done, 1 a statement failed (nothing applied: they run in one transaction), 2 bad
input (not PostgreSQL, a role name that is not a plain identifier).
"""

from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction

from audit.roles import apply, grants

_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Command(BaseCommand):
    help = (
        "Print (or --execute) the PostgreSQL grants that keep the application role from changing or "
        "deleting audit rows; run as the tables' owner after migrate."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--app-role", required=True, metavar="ROLE", help="The role the web application connects as."
        )
        parser.add_argument(
            "--archiver-role",
            metavar="ROLE",
            default=None,
            help="The role audit_archive runs as: may read the audit tables and call audit_archive_delete().",
        )
        parser.add_argument(
            "--execute",
            action="store_true",
            help="Run the statements (in one transaction) instead of printing them.",
        )

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Database roles apply to PostgreSQL only", returncode=2)
        roles = [options["app_role"], options["archiver_role"]]
        for role in filter(None, roles):
            if not _ROLE.match(role):
                raise CommandError(f"'{role}' is not a plain role name (letters, digits, _)", returncode=2)
        statements = grants(options["app_role"], options["archiver_role"])
        if not options["execute"]:
            self.stdout.write("\n".join(f"{statement};" for statement in statements))
            return
        try:
            with transaction.atomic():
                apply(statements)
        except DatabaseError as exc:
            raise CommandError(f"Not applied: {exc}", returncode=1) from exc
        self.stdout.write(f"Applied {len(statements)} statements")
