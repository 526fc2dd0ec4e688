"""JSON Patch (RFC 6902) applied to a resource body, for https://hl7.org/fhir/R4/http.html#patch.

The patch works on a deep copy; a failed operation leaves the stored resource untouched and answers
422 (a `test` that fails) or 400 (a malformed patch or a path that does not exist).
"""

from __future__ import annotations

import copy

from .outcomes import FhirError, Issue, bad_request

_MISSING = object()


def _unprocessable(message: str) -> FhirError:
    return FhirError(422, [Issue("processing", message)])


def _pointer(path: object, index: int) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"Patch operation {index}: 'path' must be a JSON pointer", code="invalid")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _array_index(container: list, token: str, index: int, *, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise bad_request(f"Patch operation {index}: '{token}' is not an array index", code="invalid")
    position = int(token)
    limit = len(container) if for_add else len(container) - 1
    if position > limit:
        raise bad_request(f"Patch operation {index}: array index {position} out of range", code="invalid")
    return position


def _parent(doc: object, parts: list[str], index: int) -> object:
    node = doc
    for token in parts[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(node, token, index, for_add=False)]
        else:
            raise bad_request(f"Patch operation {index}: path does not exist", code="invalid")
    return node


def _get(doc: object, parts: list[str], index: int) -> object:
    if not parts:
        return doc
    parent = _parent(doc, parts, index)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise bad_request(f"Patch operation {index}: path does not exist", code="invalid")
        return parent[token]
    if isinstance(parent, list):
        return parent[_array_index(parent, token, index, for_add=False)]
    raise bad_request(f"Patch operation {index}: path does not exist", code="invalid")


def _add(doc: object, parts: list[str], value: object, index: int) -> None:
    if not parts:
        raise bad_request(f"Patch operation {index}: cannot replace the whole resource", code="invalid")
    parent = _parent(doc, parts, index)
    token = parts[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(parent, token, index, for_add=True), value)
    else:
        raise bad_request(f"Patch operation {index}: path does not exist", code="invalid")


def _remove(doc: object, parts: list[str], index: int) -> object:
    if not parts:
        raise bad_request(f"Patch operation {index}: cannot remove the whole resource", code="invalid")
    parent = _parent(doc, parts, index)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise bad_request(f"Patch operation {index}: path does not exist", code="invalid")
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_array_index(parent, token, index, for_add=False))
    raise bad_request(f"Patch operation {index}: path does not exist", code="invalid")


def apply_patch(document: dict, operations: object) -> dict:
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch document must be an array of operations", code="invalid")
    doc = copy.deepcopy(document)
    for index, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op:
            raise bad_request(f"Patch operation {index} has no 'op'", code="invalid")
        kind = op["op"]
        parts = _pointer(op.get("path"), index)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"Patch operation {index} ({kind}) has no 'value'", code="invalid")
        if kind == "add":
            _add(doc, parts, copy.deepcopy(op["value"]), index)
        elif kind == "remove":
            _remove(doc, parts, index)
        elif kind == "replace":
            _remove(doc, parts, index) if parts else None
            _add(doc, parts, copy.deepcopy(op["value"]), index)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"), index)
            if kind == "move" and parts[: len(source)] == source and len(parts) > len(source):
                raise bad_request(f"Patch operation {index}: cannot move into a child", code="invalid")
            value = _remove(doc, source, index) if kind == "move" else copy.deepcopy(_get(doc, source, index))
            _add(doc, parts, value, index)
        elif kind == "test":
            if _get(doc, parts, index) != op["value"]:
                raise _unprocessable(f"Patch operation {index}: test failed at '{op.get('path')}'")
        else:
            raise bad_request(f"Patch operation {index}: unknown op '{kind}'", code="invalid")
    if not isinstance(doc, dict):
        raise bad_request("The patch did not produce a resource", code="invalid")
    return doc


def touches_filtered(patch: object, filtered: list[tuple[str, ...]]) -> str:
    """The first `path`/`from` of the patch that reads or writes one of the `filtered` element paths
    (element names below the resource, a choice element without its type: ("value",)), anything
    under one or anything above one; "" when none does. A malformed patch touches nothing here (it
    is refused as malformed when applied). Array indices and `-` are not element names; a
    primitive's extension sibling (`_birthDate`) counts as the element."""
    if not isinstance(patch, list):
        return ""
    for operation in patch:
        if not isinstance(operation, dict):
            continue
        for key in ("path", "from"):
            pointer = operation.get(key)
            if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
                continue
            names = [
                part.removeprefix("_")
                for part in (_pointer(pointer, 0) if pointer else [])
                if not (part.isdigit() or part == "-")
            ]
            if any(_related(names, steps) for steps in filtered):
                return f"'{pointer}'"
    return ""


def _related(names: list[str], steps: tuple[str, ...]) -> bool:
    # One path is the other or lies under it (the root "" lies above everything).
    return all(_same(name, step) for name, step in zip(names, steps, strict=False))


def _same(name: str, step: str) -> bool:
    # `valueQuantity` is the choice element `value` with its type.
    return name == step or (name.startswith(step) and name[len(step) : len(step) + 1].isupper())
