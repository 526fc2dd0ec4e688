"""JSON Patch (RFC 6902) against HL7's JSON Patch test cases (tests/data/json-patch-tests.json)."""

import json
from pathlib import Path

import pytest

from resources.jsonpatch import apply_patch
from resources.outcomes import FhirError

CASES = json.loads(
    (Path(__file__).resolve().parents[2] / "tests" / "data" / "json-patch-tests.json").read_text()
)


@pytest.mark.parametrize("case", CASES, ids=[c["comment"] for c in CASES])
def test_hl7_json_patch_case(case):
    if "error" in case:
        with pytest.raises(FhirError) as raised:
            apply_patch(case["doc"], case["patch"])
        assert raised.value.status in (400, 422)
    else:
        assert apply_patch(case["doc"], case["patch"]) == case["expected"]


def test_patch_does_not_touch_the_input():
    doc = {"a": [1, 2]}
    apply_patch(doc, [{"op": "remove", "path": "/a/0"}])
    assert doc == {"a": [1, 2]}
