"""Which links a rule hides (authz.rules.hidden_links), and how the search routes use the answer
(search/access.py): refused where the request names the route, skipped row by row for wildcards;
and subqueries over types whose rules check bodies (refused)."""

from __future__ import annotations

import pytest
from django.db.models import Q

from authz import rules, ruleset
from authz.context import AccessContext
from resources.models import Resource
from resources.outcomes import FhirError
from resources.search import access
from resources.search.criteria import build_criteria

pytestmark = pytest.mark.django_db

RULES = """
rules:
  - name: stats
    role: Statistician
    resource: "*"
    operation: [read, search, everything]
    validator: Allowed
    property-filters:
      - {path: Observation.subject, action: remove}
  - name: gp-blind
    role: Clerk
    resource: [Patient]
    operation: [read, search]
    validator: Allowed
    blocked-includes: ["Patient:general-practitioner"]
    blocked-search-params: [organization]
  - {name: nurse-people, role: Nurse, resource: [Patient], operation: [read, search], validator: Allowed}
  - name: nurse-obs
    role: Nurse
    resource: [Observation]
    operation: [read, search]
    validator: {FhirPath: {expression: "valueQuantity.value < 100", search: "status=final"}}
"""


@pytest.fixture
def loaded():
    ruleset.replace_rules(ruleset.parse_yaml(RULES))
    rules.forget_rules()
    yield {rule.name: rule for rule in rules.current_rules()}
    rules.forget_rules()


def caller(role: str) -> AccessContext:
    return AccessContext(role=role, identity=None)


def test_a_removed_reference_hides_every_parameter_reading_it(loaded):
    stats = loaded["stats"]
    assert {"subject", "patient"} <= rules.hidden_links(stats, "Observation")
    assert "performer" not in rules.hidden_links(stats, "Observation")
    assert rules.hidden_links(stats, "Condition") == frozenset()


def test_blocked_includes_and_parameters_hide_their_links(loaded):
    clerk = loaded["gp-blind"]
    assert rules.hidden_links(clerk, "Patient") == {"general-practitioner", "organization"}
    assert rules.hidden_params(clerk, "Patient") == {"organization"}
    assert rules.hidden_links(clerk, "Observation") == frozenset()  # a type the rule does not cover


def test_a_compartment_search_naming_a_hidden_member_type_is_refused(loaded):
    with pytest.raises(FhirError) as refused:
        access.compartment_links(
            caller("Statistician"), "search", ("Patient", "p1"), ["Observation"], ["Observation"], named=True
        )
    assert refused.value.status == 403
    # Unnamed (`Patient/p1/*`): a condition that skips the Observations instead.
    skipped = access.compartment_links(
        caller("Statistician"), "search", ("Patient", "p1"), ["Observation", "Encounter"], None, named=False
    )
    assert skipped != Q()
    nothing = access.compartment_links(
        caller("Statistician"), "search", ("Patient", "p1"), ["Encounter"], None, named=True
    )
    assert nothing == Q()


def test_hidden_reference_rows_are_those_of_rows_the_hiding_rule_authorises(loaded):
    assert access.hidden_link_rows(caller("Nurse"), "read", None) is None
    hidden = access.hidden_link_rows(caller("Statistician"), "read", ["Observation", "Encounter"])
    assert hidden is not None
    obs = Resource.objects.system("test").create(
        resource_type="Observation", fhir_id="o1", version=1, body="{}", last_updated="2024-01-01T00:00Z"
    )
    from resources.models import ReferenceIndex

    for param in ("subject", "patient", "performer"):
        ReferenceIndex.objects.system("test").create(
            resource=obs, resource_type="Observation", param=param, target_type="Patient", target_id="p1"
        )
    assert set(ReferenceIndex.objects.system("test").filter(hidden).values_list("param", flat=True)) == {
        "subject",
        "patient",
    }


@pytest.mark.parametrize(
    "resource_type, name",
    [
        ("Patient", "_has:Observation:subject:value-quantity"),
        ("Observation", "derived-from:Observation.code"),
    ],
)
def test_a_subquery_over_a_body_checked_type_is_refused(loaded, resource_type, name):
    ctx = caller("Nurse")
    with pytest.raises(FhirError) as refused:
        build_criteria(resource_type, [(name, "gt100")], strict=True, rows=access.reachable(ctx))
    assert refused.value.status == 403
    # Over a type its rules decide in SQL, the same caller may chain.
    build_criteria(
        "Observation", [("subject:Patient.gender", "male")], strict=True, rows=access.reachable(ctx)
    )
