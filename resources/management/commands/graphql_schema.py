"""`manage.py graphql_schema`: print the FHIR GraphQL schema (resources/graphql/schema.py) as SDL,
the schema served at `[base]/$graphql` (https://hl7.org/fhir/R4/graphql.html#schema)."""

from __future__ import annotations

import resource
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from graphql import print_schema

from resources import definitions
from resources.graphql.schema import instance_schema, schema

USAGE = 2


class Command(BaseCommand):
    help = (
        "Print the FHIR GraphQL schema as SDL: the system-level schema, or with --type that of an "
        "instance-level query ([base]/[type]/[id]/$graphql, the resource as the root). --stats prints "
        "the time and memory the build took to stderr. Exit status 0 when printed, 2 for an unknown "
        "type or an unwritable --output."
    )

    def add_arguments(self, parser):
        parser.add_argument("--type", metavar="TYPE", help="A resource type: its instance-level schema.")
        parser.add_argument("--output", metavar="FILE", help="Write to FILE instead of standard output.")
        parser.add_argument(
            "--stats", action="store_true", help="Print the build time and memory growth to stderr."
        )

    def handle(self, *args, **options):
        resource_type = options.get("type")
        if resource_type and resource_type not in definitions.resource_types():
            raise CommandError(f"Unknown resource type '{resource_type}'", returncode=USAGE)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        built = instance_schema(resource_type) if resource_type else schema().graphql_schema
        elapsed = time.perf_counter() - started
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        text = print_schema(built) + "\n"
        if options.get("output"):
            try:
                with open(options["output"], "w", encoding="utf-8") as out:
                    out.write(text)
            except OSError as exc:
                raise CommandError(f"Cannot write {options['output']}: {exc}", returncode=USAGE) from exc
        else:
            self.stdout.write(text, ending="")
        if options.get("stats"):
            sys.stderr.write(
                f"{len(built.type_map)} types built in {elapsed:.2f} s; peak memory grew by "
                f"{grown / 1024:.1f} MB\n"
            )
