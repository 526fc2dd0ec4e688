"""`python manage.py audit_export --format csv|ndjson|fhir [--since] [--until] [--patient] [--actor] [--output]`

Streams audit rows (audit/export.py) to a file or standard output in constant memory: CSV with a
header, NDJSON (every column and the patients, one object per line), or a FHIR R4 Bundle of
AuditEvents (https://hl7.org/fhir/R4/auditevent.html, shaped after IHE BALP,
https://profiles.ihe.net/ITI/BALP/).

All or nothing: every argument is checked before anything is opened, and a file is written under a
temporary name beside its destination and renamed into place only once complete, so a bad argument
(exit status 2) or a failure halfway (status 1) leaves no file and no partial one. The row count and
the rate go to standard error at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import export
from interactions import console


class _Out:
    """Django's OutputWrapper, writing text as given (no line ending added, no styling)."""

    def __init__(self, wrapper) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> None:
        self._wrapper.write(text, ending="")


class Command(BaseCommand):
    help = (
        "Export the audit log as CSV, NDJSON or a FHIR Bundle of AuditEvents, oldest first, streamed "
        "in constant memory. Bad arguments exit with status 2 and write nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--format",
            required=True,
            help="csv (a header, then one line per row), ndjson (one JSON object per row, every column "
            "and its patients) or fhir (a Bundle of type collection holding one AuditEvent per row).",
        )
        parser.add_argument(
            "--since",
            metavar="DATE",
            help="Rows recorded at or after DATE: YYYY-MM-DD (midnight UTC) or an ISO 8601 instant "
            "(UTC unless it gives an offset).",
        )
        parser.add_argument(
            "--until",
            metavar="DATE",
            help="Rows recorded before DATE (exclusive, so that consecutive exports do not overlap): "
            "YYYY-MM-DD (midnight UTC) or an ISO 8601 instant.",
        )
        parser.add_argument(
            "--patient",
            metavar="Patient/ID",
            help="Only rows that touched this patient: requests that returned or wrote resources of "
            "its compartment (searches included) or that aimed at the Patient itself.",
        )
        parser.add_argument(
            "--actor",
            metavar="TYPE/ID",
            help="Only rows whose caller identity is this reference (e.g. Practitioner/123).",
        )
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="Write to FILE (created whole or not at all); standard output when omitted.",
        )

    def handle(self, *args, **options):
        fmt = options["format"]
        if fmt not in export.FORMATS:
            raise CommandError(f"Unknown format '{fmt}' (one of: {', '.join(export.FORMATS)})", returncode=2)
        selection = {
            "since": _checked(options["since"], "--since", export.parse_moment),
            "until": _checked(options["until"], "--until", export.parse_moment),
            "patient": _checked(
                options["patient"],
                "--patient",
                lambda v: export.parse_reference(v, expected_type="Patient")[1],
            ),
            "actor": _checked(options["actor"], "--actor", lambda v: "/".join(export.parse_reference(v))),
        }
        if selection["since"] and selection["until"] and selection["since"] >= selection["until"]:
            raise CommandError("--since must be before --until", returncode=2)
        output = options["output"]
        started = time.perf_counter()
        ctx = console.operator("command line", transport="command", action=f"audit_export --format {fmt}")
        count = console.export_audit(
            ctx, write=lambda exporter: self._write(exporter, output, fmt, selection)
        )
        elapsed = time.perf_counter() - started
        rate = count / elapsed if elapsed > 0 else 0.0
        self.stderr.write(
            f"{count} rows exported in {elapsed:.2f} s ({rate:,.0f} rows/s)", style_func=lambda text: text
        )

    def _write(self, exporter, output: str | None, fmt: str, selection: dict) -> int:
        if output is None:
            try:
                return exporter(_Out(self.stdout), fmt, **selection)
            except BrokenPipeError as exc:
                # The reader went away (`| head`): stop quietly, and keep Python from complaining
                # again when it flushes standard output at exit.
                _silence_stdout()
                raise CommandError(
                    "Standard output was closed before the export finished", returncode=1
                ) from exc
        return self._to_file(exporter, Path(output), fmt, selection)

    def _to_file(self, exporter, path: Path, fmt: str, selection: dict) -> int:
        if path.is_dir():
            raise CommandError(f"Cannot write {path}: it is a directory", returncode=2)
        directory = path.parent if str(path.parent) else Path(".")
        try:
            # The temporary file is beside the destination so that the final rename stays on one
            # file system (atomic); creating it is also the writability check.
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror or exc}", returncode=2) from exc
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                count = exporter(out, fmt, **selection)
            os.chmod(temporary, 0o640)  # mkstemp makes it 0600; an audit extract is not for everyone
            os.replace(temporary, path)
        except BaseException as exc:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise CommandError(f"Export to {path} failed: {exc}", returncode=1) from exc
            raise
        return count


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests): nothing will flush into a closed pipe


def _checked(value: str | None, option: str, parse):
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}", returncode=2) from exc
