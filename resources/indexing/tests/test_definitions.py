"""Every R4 search parameter compiles, every official R4 example indexes without error, and the
compiled accessors yield the same values as fhirpathpy evaluating the published expression."""

import json
import tarfile
from decimal import Decimal
from pathlib import Path

import pytest

from resources import fhirjson
from resources.definitions import loader
from resources.indexing import compile as fhir_compile
from resources.indexing import fhirpath, writer
from resources.indexing.compile import converter_for
from resources.indexing.composite import _CONVERTERS as COMPONENT_CONVERTERS
from resources.indexing.composite import _ERRATA
from resources.indexing.extract import extract, plan_for

ARCHIVE = Path(__file__).resolve().parents[3] / "tests" / "data" / "r4-examples.tar.xz"


def _examples() -> dict[str, dict]:
    with tarfile.open(ARCHIVE) as archive:
        return {m.name: fhirjson.loads(archive.extractfile(m).read()) for m in archive.getmembers()}


EXAMPLES = _examples()
TYPES = sorted(loader.resource_types())


@pytest.mark.parametrize("resource_type", TYPES)
def test_every_parameter_compiles(resource_type):
    plan = plan_for(resource_type)
    params = loader.search_parameters(resource_type)
    indexed = {o.param for ps in plan.parts_by_key.values() for p in ps for o in p.outputs}
    indexed |= {o.param for p in plan.always for o in p.outputs}
    indexed |= {p.code for p, _ in plan.fallbacks} | {c.code for c in plan.composites}
    for code in params:
        assert code in indexed or code in plan.skipped, code
    assert set(plan.skipped) <= {"_id", "_lastUpdated", "_text", "_content", "_query", "near"}


def test_only_the_known_few_parts_need_fhirpathpy():
    fallback = {(t, p.code, part) for t in TYPES for p, part in plan_for(t).fallbacks}
    assert fallback == set()


def test_fhirpathpy_rewrites():
    assert fhirpath.rewrite("Observation.subject.where(resolve() is Patient)") == (
        "Observation.subject.where(refersTo('Patient'))"
    )
    assert fhirpath.rewrite("(Observation.component.value as Quantity)") == (
        "Observation.component.value.ofType(Quantity)"
    )
    assert fhirpath.rewrite("value.as(DateTime) | value.as(Period)") == (
        "value.ofType(dateTime) | value.ofType(Period)"
    )


def test_fhirpathpy_handles_what_it_refuses_unrewritten():
    body = EXAMPLES["Observation-blood-pressure.json"]
    values = fhirpath.evaluate("(Observation.component.value as Quantity)", body)
    assert [v["value"] for _, v in values] == [107, 60]
    assert fhirpath.evaluate("Observation.subject.where(resolve() is Patient)", body) == [
        ("Reference", {"reference": "Patient/example"})
    ]
    assert fhirpath.evaluate("Observation.subject.where(resolve() is Group)", body) == []


def test_unsupported_parts_fall_back_to_fhirpathpy():
    branches, fallback = fhir_compile.compile_expression("Patient.name.where(given.exists())", "Patient")
    assert branches == () and fallback == ("Patient.name.where(given.exists())",)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_indexes(name):
    body = EXAMPLES[name]
    for table, rows in extract(body["resourceType"], body).items():
        width = len(writer.TABLES[table][1])
        assert all(len(row) == width for row in rows), table


def _canonical(value) -> str:
    # FHIRPath union (`|`) drops duplicates and compares decimals by value (1.0 = 1.00).
    return json.dumps(
        value, sort_keys=True, default=lambda d: str(d.normalize()) if isinstance(d, Decimal) else d
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_compiled_accessors_equal_fhirpathpy(name):
    body = EXAMPLES[name]
    resource_type = body["resourceType"]
    for code, param in loader.search_parameters(resource_type).items():
        if not param.expression or param.type == "composite":
            continue
        branches, fallback = fhir_compile.compile_expression(param.expression, resource_type)
        assert not fallback
        fast = {_canonical(v) for b in branches for v in b.run([body])}
        slow = {_canonical(v) for _, v in fhirpath.evaluate(param.expression, body)}
        assert fast == slow, f"{code}: {param.expression}"


COMPOSITE_EXAMPLES = sorted(
    name for name, body in EXAMPLES.items() if plan_for(body["resourceType"]).composites
)


@pytest.mark.parametrize("name", COMPOSITE_EXAMPLES)
def test_composite_components_equal_fhirpathpy(name):
    """Each component's values over all roots equal fhirpathpy's `root.component` expression."""
    body = EXAMPLES[name]
    resource_type = body["resourceType"]
    for compiled in plan_for(resource_type).composites:
        param = loader.search_parameters(resource_type)[compiled.code]
        relatives = _ERRATA.get((resource_type, compiled.code)) or [e for _, e in param.components]
        for root in fhir_compile.split_union(param.expression):
            shapes = {(b.steps, b.leaf) for b in fhir_compile.compile_part(root, resource_type)}
            roots = [(b, components) for b, components in compiled.roots if (b.steps, b.leaf) in shapes]
            for index, relative in enumerate(relatives):
                fast = {
                    _canonical(value)
                    for branch, components in roots
                    for element in branch.run([body])
                    for part, _ in components[index].parts
                    for value in part.run([body] if part.from_root else [element])
                }
                if relative.startswith("%resource."):
                    # Read once per root element, from the resource: nothing without a root element.
                    if not any(branch.run([body]) for branch, _ in roots):
                        assert not fast
                        continue
                    fulls = [resource_type + relative[len("%resource") :]]
                else:
                    # One part at a time: fhirpathpy's union forgets the type of primitive values.
                    fulls = [f"{root}.select({part})" for part in fhir_compile.split_union(relative)]
                # Values with no meaning for the component's type (a Reference under a token) are
                # dropped at compile time; drop them here too.
                kind = roots[0][1][index].kind if roots else None
                slow = {
                    _canonical(v)
                    for full in fulls
                    for type_code, v in fhirpath.evaluate(full, body)
                    if converter_for(COMPONENT_CONVERTERS[kind], type_code)
                }
                assert fast == slow, (compiled.code, fulls)


def test_a_fallback_part_is_evaluated_and_converted_by_its_value_type():
    from resources.indexing.extract import Plan

    family = loader.SearchParam(
        code="family-of-given", type="string", expression="", targets=(), components=(), url="", base=()
    )
    born = loader.SearchParam(
        code="born", type="date", expression="", targets=(), components=(), url="", base=()
    )
    plan = Plan(
        "Patient",
        fallbacks=[
            (family, "Patient.name.where(given.exists()).family"),
            (born, "Patient.birthDate | Patient.deceased.ofType(dateTime)"),
        ],
    )
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Kept", "given": ["A"]}, {"family": "Dropped"}],
        "birthDate": "2000",
    }
    rows = plan.extract(body)
    assert rows["string"] == [("family-of-given", "kept", "Kept")]
    assert [r[0] for r in rows["date"]] == ["born"]
