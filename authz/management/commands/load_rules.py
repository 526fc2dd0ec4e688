"""`python manage.py load_rules FILE`: replace the rule chain with the rules of a YAML file.

The whole file is validated first (unknown validator, operation, resource type, search parameter,
bad FHIRPath...); on any problem the old rule set stays and the command exits with status 2.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from authz import ruleset
from authz.validators.base import RuleError
from interactions import console
from resources.outcomes import FhirError


class Command(BaseCommand):
    help = "Replace the access rules with those of a YAML file (all or nothing). '-' reads standard input."

    def add_arguments(self, parser):
        parser.add_argument("file", help="YAML rule file (see docs/rules.md), or - for standard input.")
        parser.add_argument("--check", action="store_true", help="Validate only; change nothing.")

    def handle(self, *args, **options):
        source = options["file"]
        try:
            text = self.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {source}: {exc}", returncode=2) from exc
        try:
            raw = ruleset.parse_yaml(text)
            if options["check"]:
                compiled = ruleset.compile_all(raw)
            else:
                ctx = console.operator("load_rules", transport="command", action=f"load_rules {source}")
                compiled = console.replace_rules(ctx, rules=raw)
        except RuleError as exc:
            raise CommandError(f"{source}: {exc}. The rules in force are unchanged.", returncode=2) from exc
        except FhirError as exc:
            reason = exc.issues[0].diagnostics
            raise CommandError(
                f"{source}: {reason}. The rules in force are unchanged.", returncode=2
            ) from exc
        verb = "are valid" if options["check"] else "loaded"
        self.stdout.write(f"{len(compiled)} rule(s) {verb}.")
