import pytest
from tests.test_leaks import *  # noqa
from tests.test_leaks import world  # noqa
from resources.models import Resource

def unrestricted(ctx, operation, types=None):
    return Resource.objects.system("mutation")

@pytest.mark.parametrize("q", [
    Query("Observation", (("performer:Practitioner.name", "Bramwell"),)),
    Query("Observation", (("_include", "Observation:performer"),)),
])
def test_mutation(world, monkeypatch, q):
    import resources.search.criteria as criteria
    import resources.search.engine as engine
    import resources.search.access as access
    original = access.rows
    if "include" in str(q):
        def rows(ctx, op, types=None):
            return unrestricted(ctx, op, types) if op == "read" else original(ctx, op, types)
    else:
        def rows(ctx, op, types=None):
            return unrestricted(ctx, op, types) if types and types[0] == "Practitioner" else original(ctx, op, types)
    monkeypatch.setattr(access, "rows", rows)
    with pytest.raises(AssertionError) as caught:
        check_answer(world, Oracle(world), "pa1", q)
    print("\nDETECTED:", str(caught.value)[:300])
