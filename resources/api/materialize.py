"""`POST [base]/CarePlan/[id]/$materialize`: the plan's Tasks over a window, created or previewed
(README "CarePlan scheduling"; careplans/materialize.py).

Input: an optional Parameters resource with `start` and `end` (dateTime: the window, default now to
now + FHIR_CAREPLAN_HORIZON_DAYS) and `dry-run` (boolean: answer the Tasks that would be created,
create nothing). Output: a `collection` Bundle of the Tasks created (or previewed), preceded by an
OperationOutcome when the plan holds parts the scheduler cannot compute. Needs the `materialize`
operation on CarePlan and `read` of that plan.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.http import HttpRequest, HttpResponse

from interactions import careplans as door

from .. import fhirjson
from ..outcomes import Issue, bad_request, error, not_found, operation_outcome
from .http import base_url, context, json_response
from .parameters import read_parameters

_LONGEST = timedelta(days=366)


def materialize(request: HttpRequest, fhir_id: str) -> HttpResponse:
    if request.method != "POST":
        failure = error(405, "not-supported", f"{request.method} is not supported here (allowed: POST)")
        failure.headers["Allow"] = "POST"
        raise failure
    if not fhirjson.is_valid_id(fhir_id):
        raise not_found(f"CarePlan/{fhir_id} is not known")
    asked = set(request.GET) - {"_format", "_pretty"}
    if asked:
        raise bad_request(
            f"$materialize takes its parameters in a Parameters body, not in the URL ({', '.join(sorted(asked))})"
        )
    options = _options(request)
    run = door.materialize(
        context(request),
        resource_type="CarePlan",
        fhir_id=fhir_id,
        start=options.get("start"),
        end=options.get("end"),
        dry_run=options.get("dry-run", False),
    )
    base = base_url(request)
    entries = []
    if run.warnings:
        issues = [Issue("informational", text, severity="warning") for text in run.warnings]
        entries.append({"resource": operation_outcome(issues)})
    for stored in run.shown:
        entries.append({"fullUrl": f"{base}/Task/{stored.fhir_id}", "resource": fhirjson.loads(stored.body)})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return json_response(fhirjson.dumps(bundle), 200, request)


def _options(request: HttpRequest) -> dict:
    given = read_parameters(
        request,
        {"start": ("valueDateTime",), "end": ("valueDateTime",), "dry-run": ("valueBoolean",)},
        operation="$materialize",
    )
    options: dict = {}
    if "dry-run" in given:
        if not isinstance(given["dry-run"], bool):
            raise bad_request("Parameter 'dry-run' needs a valueBoolean")
        options["dry-run"] = given["dry-run"]
    for name in ("start", "end"):
        if name in given:
            options[name] = _moment(name, given[name], ("Parameters.parameter",))
    start, end = options.get("start"), options.get("end")
    if start and end and end <= start:
        raise bad_request("Parameter 'end' must be after 'start'")
    if start and end and end - start > _LONGEST:
        raise bad_request("A $materialize window is at most 366 days", code="too-costly")
    return options


def _moment(name: str, value: object, where: tuple[str, ...]) -> datetime:
    if not isinstance(value, str) or "T" not in value:
        raise bad_request(
            f"Parameter '{name}' needs a valueDateTime with a time and a zone", expression=where
        )
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"Parameter '{name}': '{value}' is not a dateTime", expression=where) from exc
    if moment.tzinfo is None:
        raise bad_request(f"Parameter '{name}': '{value}' needs a time zone", expression=where)
    if not 1900 <= moment.year <= 2999:
        raise bad_request(f"Parameter '{name}': '{value}' is outside the years a schedule covers (1900-2999)")
    return moment
