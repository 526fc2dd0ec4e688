"""The demo data builder (resources.demo) and the generate_demo_data command."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django.db import transaction

from authz.context import AccessContext
from resources import fhirjson
from resources.demo import mrn, patient_bundle, patient_bundles, patient_entries, reference_bundle
from resources.demo.reference import ORGANIZATIONS
from resources.models import Resource
from resources.services import resource_create
from resources.validation import validate_resource

REFERENCE_COUNTS = Counter(Organization=5, Practitioner=20, PractitionerRole=20, CareTeam=5)


def _types(bundle: dict) -> Counter:
    return Counter(entry["resource"]["resourceType"] for entry in bundle["entry"])


def _run(*args: str, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("generate_demo_data", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


# --- the builder -------------------------------------------------------------------------------------


def test_same_seed_builds_identical_bundles_and_other_seeds_do_not():
    first = fhirjson.dumps(patient_bundle(7, range(1, 4)))
    assert fhirjson.dumps(patient_bundle(7, range(1, 4))) == first
    assert fhirjson.dumps(patient_bundle(8, range(1, 4))) != first
    assert fhirjson.dumps(reference_bundle()) == fhirjson.dumps(reference_bundle())


def test_a_patient_does_not_depend_on_batching_or_patient_count():
    one_by_one = [e for _, bundle in patient_bundles(3, 4, batch_size=1) for e in bundle["entry"]]
    batched = [e for _, bundle in patient_bundles(3, 4, batch_size=3) for e in bundle["entry"]]
    assert fhirjson.dumps(one_by_one) == fhirjson.dumps(batched)
    assert fhirjson.dumps(patient_entries(3, 2)) == fhirjson.dumps(patient_bundle(3, [2])["entry"])


def test_every_generated_resource_is_valid_r4():
    bundles = [reference_bundle(), patient_bundle(1, range(1, 7)), patient_bundle(42, range(1, 4))]
    for bundle in bundles:
        for entry in bundle["entry"]:
            # Through JSON text, as the server would receive it (decimals come back as Decimal).
            resource = fhirjson.loads(fhirjson.dumps(entry["resource"]))
            assert validate_resource(resource) == [], (resource["resourceType"], validate_resource(resource))


def test_patient_bundles_reference_only_their_own_entries_and_the_reference_data():
    reference_ids = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in reference_bundle()["entry"]
    }
    bundle = patient_bundle(5, range(1, 4))
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    assert len(full_urls) == len(bundle["entry"])
    references = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference":
                    references.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bundle)
    assert references
    assert all(r in full_urls or r in reference_ids for r in references)


def test_no_object_is_shared_between_or_within_resources():
    # process_bundle rewrites references in place: a shared dict would be rewritten for all its users.
    seen: set[int] = set()

    def walk(node):
        if isinstance(node, (dict, list)):
            assert id(node) not in seen, node
            seen.add(id(node))
            for value in node.values() if isinstance(node, dict) else node:
                walk(value)

    bundles = [patient_bundle(2, range(1, 4)), reference_bundle()]  # kept alive: ids stay unique
    for bundle in bundles:
        walk(bundle)


def test_content_is_shaped_like_a_clinical_record():
    entries = patient_entries(1, 1)
    patient = entries[0]["resource"]
    assert patient["resourceType"] == "Patient"
    assert patient["identifier"][0] == {**patient["identifier"][0], "system": "http://example.org/fhir/mrn"}
    assert patient["identifier"][0]["value"] == mrn(1, 1) == "MRN-1-1"
    for key in ("name", "gender", "birthDate", "address", "telecom", "managingOrganization", "maritalStatus"):
        assert key in patient
    assert "1930-01-01" <= patient["birthDate"] <= "2020-12-31"

    counts = _types(patient_bundle(1, range(1, 11)))
    assert counts["Patient"] == 10
    assert counts["Observation"] > sum(n for t, n in counts.items() if t != "Observation")
    assert 30 <= counts["Encounter"] <= 120
    assert counts["Condition"] and counts["MedicationRequest"] and counts["CarePlan"]
    assert 100 <= sum(counts.values()) / 10 <= 300

    codes = {
        e["resource"]["code"]["coding"][0]["code"]
        for e in patient_bundle(1, range(1, 11))["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert {"8867-4", "85354-9", "8310-5", "9279-1", "2339-0", "718-7"} <= codes


def test_reference_data_has_fixed_ids_and_a_parent_organization():
    counts = _types(reference_bundle())
    assert counts == REFERENCE_COUNTS
    entries = reference_bundle()["entry"]
    assert all(e["request"]["method"] == "PUT" for e in entries)
    assert entries[0]["request"]["url"] == "Organization/org-1"
    children = [e["resource"] for e in entries if e["resource"].get("partOf")]
    assert children and children[0]["partOf"]["reference"] == "Organization/org-1"
    assert [o.id for o in ORGANIZATIONS] == [f"org-{n}" for n in range(1, 6)]


# --- the command -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_writes_the_expected_resources():
    out, err = _run(patients="3", seed="4", progress_every="2")
    expected = REFERENCE_COUNTS + _types(patient_bundle(4, range(1, 4)))
    stored = Counter(
        Resource.objects.system("test").filter(deleted=False).values_list("resource_type", flat=True)
    )
    assert stored == expected
    assert f"Wrote {sum(expected.values())} resources" in out
    assert "resources/s" in out
    assert "2 patients" in err
    mrns = {
        json.loads(b)["identifier"][0]["value"]
        for b in Resource.objects.system("test")
        .filter(resource_type="Patient")
        .values_list("body", flat=True)
    }
    assert mrns == {"MRN-4-1", "MRN-4-2", "MRN-4-3"}


@pytest.mark.django_db
def test_bundles_are_cut_at_the_entry_limit(settings):
    sizes = [len(patient_entries(9, n)) for n in (1, 2)]
    # Each patient fits in a bundle on its own, both together do not.
    settings.FHIR_MAX_BUNDLE_ENTRIES = max(max(sizes), REFERENCE_COUNTS.total()) + 1
    assert sum(sizes) > settings.FHIR_MAX_BUNDLE_ENTRIES
    _run(patients="2", seed="9", batch_size="10", progress_every="0")
    assert Resource.objects.system("test").filter(resource_type="Patient").count() == 2
    assert Resource.objects.system("test").count() == sum(sizes) + REFERENCE_COUNTS.total()


def _snapshot() -> list[tuple[str, str]]:
    """Stored bodies without id/meta, server-assigned ids replaced by their write order per type."""
    rows = list(
        Resource.objects.system("test").order_by("pk").values_list("resource_type", "fhir_id", "body")
    )
    label: dict[str, str] = {}
    seen: Counter = Counter()
    for rtype, fid, _ in rows:
        seen[rtype] += 1
        label[f"{rtype}/{fid}"] = f"{rtype}/#{seen[rtype]}"

    def normalise(node):
        if isinstance(node, dict):
            return {
                k: (label.get(v, v) if k == "reference" else normalise(v))
                for k, v in node.items()
                if k not in ("id", "meta")
            }
        if isinstance(node, list):
            return [normalise(v) for v in node]
        return node

    return [(label[f"{t}/{f}"], fhirjson.dumps(normalise(fhirjson.loads(body)))) for t, f, body in rows]


def _fresh_run(seed: str) -> list[tuple[str, str]]:
    with transaction.atomic():
        assert not Resource.objects.system("test").exists()
        _run(patients="2", seed=seed, batch_size="2", progress_every="0")
        snapshot = _snapshot()
        transaction.set_rollback(True)
    return snapshot


@pytest.mark.django_db
def test_same_seed_stores_identical_content():
    first = _fresh_run("11")
    assert first == _fresh_run("11")
    assert first != _fresh_run("12")


@pytest.mark.django_db
def test_if_empty_does_nothing_when_a_patient_exists():
    resource_create(AccessContext.system("test"), resource_type="Patient", body={"resourceType": "Patient"})
    out, _ = _run(patients="2", if_empty=True)
    assert "nothing was written" in out
    assert Resource.objects.system("test").count() == 1


@pytest.mark.django_db
def test_if_empty_writes_into_an_empty_store():
    _run(patients="1", if_empty=True, progress_every="0")
    assert Resource.objects.system("test").filter(resource_type="Patient").count() == 1


@pytest.mark.parametrize(
    "options",
    [
        {"patients": "-1"},
        {"patients": "three"},
        {"patients": "2.5"},
        {},
        {"patients": "1", "batch_size": "0"},
        {"patients": "1", "seed": "x"},
    ],
)
def test_bad_input_is_a_usage_error(options):
    with pytest.raises(CommandError) as raised:
        _run(**options)
    assert raised.value.returncode == 2


def test_bad_input_exits_with_status_2_from_the_command_line(capsys):
    utility = ManagementUtility(["manage.py", "generate_demo_data", "--patients", "-3", "--skip-checks"])
    with pytest.raises(SystemExit) as exited:
        utility.execute()
    assert exited.value.code == 2
    assert "--patients must be at least 0" in capsys.readouterr().err
