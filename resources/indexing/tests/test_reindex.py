"""`manage.py reindex` rebuilds the index of current resources, batched, per type or all."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from resources.models import CompartmentMembership, ReferenceIndex, StringIndex, TokenIndex
from resources.tests.factories import ObservationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def _reindex(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("reindex", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _snapshot():
    return (
        sorted(
            TokenIndex.objects.system("test").values_list("resource_id", "param", "system", "code", "text")
        ),
        sorted(StringIndex.objects.system("test").values_list("resource_id", "param", "value")),
        sorted(
            ReferenceIndex.objects.system("test").values_list(
                "resource_id", "param", "target_type", "target_id"
            )
        ),
        sorted(
            CompartmentMembership.objects.system("test").values_list(
                "resource_id", "compartment_type", "compartment_id"
            )
        ),
    )


@pytest.fixture
def data(fhir):
    patients = [fhir.create(PatientFactory()) for _ in range(3)]
    for patient in patients:
        fhir.create({**ObservationFactory(), "subject": {"reference": f"Patient/{patient['id']}"}})
    gone = fhir.create(PatientFactory())
    fhir.delete(f"Patient/{gone['id']}")
    return patients


def test_reindex_rebuilds_what_the_writes_built(data):
    written = _snapshot()
    for model in (TokenIndex, StringIndex, ReferenceIndex, CompartmentMembership):
        model.objects.system("test").delete()
    out, err = _reindex("--batch-size", "2")
    assert _snapshot() == written
    assert out.startswith("Reindexed 6 resources in ")
    assert "resources/s" in out
    assert "6/6 resources (100 %)" in err


def test_reindex_one_type_and_stale_rows(data):
    TokenIndex.objects.system("test").filter(resource_type="Patient", param="gender").delete()
    observation_tokens = TokenIndex.objects.system("test").filter(resource_type="Observation").count()
    stale = TokenIndex.objects.system("test").filter(resource_type="Patient").first()
    TokenIndex.objects.system("test").create(
        resource_id=stale.resource_id, resource_type="Patient", param="no-longer-defined", code="x"
    )
    out, _ = _reindex("--type", "Patient")
    assert out.startswith("Reindexed 3 Patient resources")
    assert TokenIndex.objects.system("test").filter(resource_type="Patient", param="gender").count() == 3
    assert not TokenIndex.objects.system("test").filter(param="no-longer-defined").exists()
    assert TokenIndex.objects.system("test").filter(resource_type="Observation").count() == observation_tokens


def test_reindex_refuses_bad_input():
    with pytest.raises(CommandError) as unknown:
        _reindex("--type", "Patients")
    assert unknown.value.returncode == 2
    for bad in ("0", "x", "-3"):
        with pytest.raises(CommandError) as batch:
            _reindex("--batch-size", bad)
        assert batch.value.returncode == 2


def test_reindex_of_nothing():
    out, err = _reindex()
    assert out.startswith("Reindexed 0 resources")
    assert err == ""


def test_help_explains_the_options():
    from resources.management.commands.reindex import Command

    text = Command().create_parser("manage.py", "reindex").format_help()
    assert "--type" in text and "--batch-size" in text and "exit status" in text
