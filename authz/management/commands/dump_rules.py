"""`python manage.py dump_rules [--output FILE]`: write the rule chain in force as YAML."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from authz import ruleset


class Command(BaseCommand):
    help = "Write the access rules in force as YAML (the format load_rules reads)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write; standard output when absent.")

    def handle(self, *args, **options):
        text = ruleset.dump_yaml()
        if options["output"]:
            try:
                Path(options["output"]).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot write {options['output']}: {exc}", returncode=2) from exc
        else:
            self.stdout.write(text, ending="")
