"""Every escape from the access rules is on a short, reviewed list.

`Resource.objects.system(reason)` and `AccessContext.system(reason)` run without the caller's rules.
This test finds every call in the project's code and fails on one that is not listed here, so a new
bypass is a visible, reviewed change. An entry is (file, reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authz.querysets import UnscopedQuery
from resources.models import (
    CompartmentMembership,
    ReferenceIndex,
    Resource,
    ResourceVersion,
    StringIndex,
    TokenIndex,
)

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = {
    # A rule's own decision on one row: the filter is the rule's condition.
    ("authz/rules.py", "access decision on one row"),
    # Validators look up organisations, roles and links to build their narrowing.
    ("authz/validators/lookups.py", "access rule lookup"),
    # The write guard: whether what a write would newly grant reaches only what it wrote itself.
    ("authz/grants.py", "write guard: rows the request wrote"),
    # The explain tool shows an Admin what the rules decide; it returns no resource.
    ("authz/explain.py", "explain"),
    # An external subject signing in for the first time, when the issuer allows auto-create.
    ("authz/identity.py", "auto-create identity"),
    # Signing in: the identity resources whose identifier or verified email names the subject.
    ("authz/identity.py", "identity by token"),
    # History lists versions, each decided on its own content by the caller's rules.
    ("resources/selectors.py", "history versions, each decided below"),
    # Operator commands.
    ("resources/management/commands/generate_demo_data.py", "demo data: is the database empty"),
    ("resources/management/commands/generate_demo_data.py", "demo data"),
    ("resources/management/commands/reindex.py", "reindex"),
    # Subqueries that only name candidate rows; the outer query is the caller's restricted one.
    ("resources/search/compartment.py", "compartment focus row"),
    ("resources/search/everything.py", "patient record membership"),
    ("resources/search/include.py", "include candidates"),
    # Subscriptions: the platform matches events against criteria (what it owes; the subscriber's
    # rules decide each notification in the door), and acts on Subscriptions it owns (status changes).
    ("subscriptions/matching.py", "subscription matching"),
    ("subscriptions/notification.py", "subscription delivery: is the event's version still current"),
    ("subscriptions/notification.py", "subscription delivery: the criteria as the subscriber's search"),
    ("subscriptions/worker.py", "subscription {status}"),
    # The CarePlan scheduler: the platform reads the plans it schedules and the Tasks it made, and
    # writes Tasks as itself (interactions/careplans.py names it in the audit log).
    ("careplans/jobs.py", "careplan scheduling"),
    ("careplans/materialize.py", "careplan scheduling"),
    ("careplans/materialize.py", "careplan scheduling: plans never scheduled"),
    ("careplans/materialize.py", "careplan scheduling: which occurrences exist"),
    ("careplans/materialize.py", "careplan scheduling: a plan's open Tasks"),
    ("careplans/materialize.py", "careplan scheduling: Tasks whose window opened"),
    # Subqueries that only remove rows (reference rows held by resources whose rule hides them).
    ("resources/search/access.py", "rows whose rule hides a link"),
}

_CALL = re.compile(r"\.system\(\s*\n?\s*(f?)\"([^\"]*)\"")
_SKIP = (".venv", "tests", "migrations", "bench")


def _calls() -> set[tuple[str, str]]:
    found = set()
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if any(part in _SKIP for part in relative.parts) or relative.name.startswith("test_"):
            continue
        text = path.read_text(encoding="utf-8")
        for match in _CALL.finditer(text):
            found.add((relative.as_posix(), match.group(2)))
        bare = len(re.findall(r"\.system\(", text)) - len(_CALL.findall(text))
        # `.system(` in prose (docstrings) is written `.system(reason)`; anything else must be a literal.
        prose = len(re.findall(r"\.system\(reason\)", text))
        assert bare == prose, f"{relative}: a .system( call without a literal reason"
    return found


def test_every_system_call_is_on_the_list():
    calls = _calls()
    assert calls - ALLOWED == set(), "new bypasses of the access rules; review and list them"
    assert ALLOWED - calls == set(), "listed bypasses that no longer exist; remove them"


@pytest.mark.django_db
def test_unscoped_resource_queries_fail_closed():
    with pytest.raises(UnscopedQuery):
        list(Resource.objects.all())
    with pytest.raises(UnscopedQuery):
        Resource.objects.filter(resource_type="Patient").exists()
    with pytest.raises(UnscopedQuery):
        Resource.objects.count()
    with pytest.raises(UnscopedQuery):
        Resource.objects.filter(pk__in=Resource.objects.values("pk")).system("outer only").count()
    assert Resource.objects.system("test").count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", [ResourceVersion, TokenIndex, StringIndex, ReferenceIndex, CompartmentMembership]
)
def test_unscoped_content_queries_fail_closed(model):
    """Versions and index rows hold what bodies hold: fetching them needs a scope too. As a subquery
    of a scoped Resource query they need none (that query decides what comes back)."""
    with pytest.raises(UnscopedQuery):
        list(model.objects.all())
    with pytest.raises(UnscopedQuery):
        model.objects.filter(resource_type="Patient").exists()
    with pytest.raises(UnscopedQuery):
        model.objects.count()
    assert model.objects.system("test").count() == 0
    inner = model.objects.filter(resource_type="Patient").values("resource_id")
    assert Resource.objects.system("test").filter(pk__in=inner).count() == 0


def test_only_the_interaction_layer_writes_audit_rows():
    """audit.services.record is called from interactions/door.py and nowhere else in the project's
    code: every transport's calls are audited by the door, never by an adapter of its own."""
    callers = set()
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if any(part in _SKIP for part in relative.parts) or relative.name.startswith("test_"):
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"\b(audit|services)\.record\(|from audit\.services import[^\n]*\brecord\b", text):
            callers.add(relative.as_posix())
    assert callers == {"interactions/door.py"}
