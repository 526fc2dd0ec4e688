"""A cheap first look at whether an event's version can match a subscription's criteria, in memory,
before the search engine is asked (matching.py).

The version's index rows are extracted once per event, as the store would index it
(resources/indexing/extract.py); each criterion that is a plain reference, token or `_id` equality
is then looked up among them. The answer is only ever "no" or "maybe": `False` when such a
criterion certainly matches none of the version's values (the subscription is skipped without a
query), `True` otherwise, and every "maybe" is decided by the search engine as before, so modifiers,
chains, other parameter types and value forms this does not read never lose a notification.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl

from resources import definitions
from resources.indexing.extract import extract


def rows_of(resource_type: str, body: dict) -> dict[str, list[tuple]]:
    return extract(resource_type, body)


def may_match(criteria: str, fhir_id: str, rows: dict[str, list[tuple]]) -> bool:
    resource_type, tests = _compiled(criteria)
    for kind, code, values in tests:
        if kind == "_id":
            if fhir_id not in values:
                return False
        elif kind == "reference":
            mine = [r for r in rows.get("reference", ()) if r[0] == code]
            if any(r[3] for r in mine):
                continue  # an absolute URL the engine may still match to a local resource
            found = {(r[1], r[2]) for r in mine}
            ids = {target_id for _, target_id in found}
            if not any((typed in found) if typed[0] else (typed[1] in ids) for typed in values):
                return False
        elif kind == "token":
            found = {
                ((r[1] or "").lower(), (r[2] or "").lower()) for r in rows.get("token", ()) if r[0] == code
            }
            codes = {c for _, c in found}
            if not any(_token_hit(system, code_, found, codes) for system, code_ in values):
                return False
    return True


def _token_hit(system: str | None, code: str, found: set, codes: set) -> bool:
    if system is None:
        return code in codes
    return (system, code) in found


@lru_cache(maxsize=4096)
def _compiled(criteria: str) -> tuple[str, tuple]:
    """The criteria's equality tests this module can judge: (kind, code, values)."""
    resource_type, _, query = criteria.partition("?")
    tests = []
    try:
        params = definitions.search_parameters(resource_type)
    except KeyError:
        return resource_type, ()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if ":" in name or "." in name or not value:
            continue  # modifiers and chains: the engine decides
        if name == "_id":
            tests.append(("_id", name, frozenset(value.split(","))))
            continue
        param = params.get(name)
        if param is None:
            continue
        values = value.split(",")
        if param.type == "reference":
            parsed = [_reference(v) for v in values]
            if all(p is not None for p in parsed):
                tests.append(("reference", name, tuple(parsed)))
        elif param.type == "token":
            parsed = [_token(v) for v in values]
            if all(p is not None for p in parsed):
                tests.append(("token", name, tuple(parsed)))
    return resource_type, tuple(tests)


def _reference(value: str) -> tuple[str, str] | None:
    """`Type/id` or a bare `id`; anything else (URLs, versions) is left to the engine."""
    if "://" in value or "_history" in value or "|" in value:
        return None
    parts = value.split("/")
    if len(parts) == 2 and parts[0] and parts[1]:
        return (parts[0], parts[1])
    if len(parts) == 1 and parts[0]:
        return ("", parts[0])
    return None


def _token(value: str) -> tuple[str | None, str] | None:
    """`system|code`, `|code` (no system) or `code`; `system|` and escapes are left to the engine."""
    if "\\" in value:
        return None
    if "|" not in value:
        return (None, value.lower())
    system, _, code = value.partition("|")
    if not code or "|" in code:
        return None
    return (system.lower(), code.lower())
