"""Every official R4 example resource (HL7 `hl7.fhir.r4.examples@4.0.1`, packed by
scripts/pack_examples.py) round-trips through update-as-create and read unchanged but for the server's
meta fields (AuditEvents too: stored as client AuditEvents beside the server's own audit log, whose
ids are digits and which none of the examples uses); the few examples that break the R4
specification are refused with an OperationOutcome that says why."""

import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import simplejson

from resources import fhirjson

ARCHIVE = Path(__file__).parent / "data" / "r4-examples.tar.xz"

# Examples that do not conform to R4 itself, and the words the refusal must contain.
BREAK_THE_SPEC = {
    # Questionnaire.item.linkId is 1..1; the nested display item of this example has none.
    "Questionnaire-qs1.json": "linkId",
}


def _examples() -> dict[str, bytes]:
    with tarfile.open(ARCHIVE) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


EXAMPLES = _examples()


def _without_server_meta(body: dict) -> dict:
    meta = {k: v for k, v in (body.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in body.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def _as_accepted(subscription: dict) -> dict:
    """A Subscription as the server stores it (subscriptions/definition.py): accepted at once, so
    `requested` becomes `active` (or `off` when its `end` has passed), and the receiver's header
    values masked."""
    out = {**subscription, "channel": dict(subscription["channel"])}
    if out["status"] == "requested":
        out["status"] = "active"
    if out["status"] == "active" and out.get("end", "9999") < datetime.now(UTC).isoformat():
        out["status"] = "off"  # ended already
    if "header" in out["channel"]:
        out["channel"]["header"] = [f"{line.split(':', 1)[0]}: ****" for line in out["channel"]["header"]]
    return out


def test_archive_holds_the_examples():
    assert len(EXAMPLES) > 700


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_round_trips(fhir, name):
    original = fhirjson.loads(EXAMPLES[name])
    resource_type = original["resourceType"]
    if "id" in original:
        response = fhir.put(f"{resource_type}/{original['id']}", EXAMPLES[name])
    else:
        response = fhir.post(resource_type, EXAMPLES[name])
    if name in BREAK_THE_SPEC:
        assert response.status_code == 400
        outcome = response.json_body
        assert outcome["resourceType"] == "OperationOutcome"
        assert BREAK_THE_SPEC[name] in fhirjson.dumps(outcome)
        return
    assert response.status_code == 201, response.content[:2000]
    fhir_id = response.json_body["id"]
    read = fhir.get(f"{resource_type}/{fhir_id}")
    assert read.status_code == 200
    stored = fhirjson.loads(read.content)
    assert stored["meta"]["versionId"] == "1"
    if resource_type == "AuditEvent":
        # Found by the search that merges client AuditEvents with the server's log (audit/api.py).
        found = fhir.get(f"AuditEvent?_id={fhir_id}").json_body
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [fhir_id]
    expected = _without_server_meta({**original, "id": fhir_id})
    if resource_type == "Subscription":
        expected = _as_accepted(expected)
    # Text comparison with sorted keys: decimals must keep their written precision (1.50 stays 1.50).
    got, want = _sorted_text(_without_server_meta(stored)), _sorted_text(expected)
    if got != want:
        at = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
        )
        pytest.fail(
            f"differs at {at}: stored ...{got[at - 80 : at + 80]}... expected ...{want[at - 80 : at + 80]}..."
        )


def _sorted_text(body: dict) -> str:
    return simplejson.dumps(body, use_decimal=True, sort_keys=True, ensure_ascii=False)
