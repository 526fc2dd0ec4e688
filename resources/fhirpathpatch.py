"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a Parameters resource of `operation`s
(add, insert, delete, replace, move) whose `path` is a FHIRPath expression.

Paths are evaluated by a small locator that keeps track of where each result lives, so that the
operation can change it in place: it understands the navigation subset patches use in practice —
`Type.element`, indexers `[n]`, `first()`, `last()`, and `where(element = 'literal')` joined by `and`.
A path outside that subset is refused with a clear 400, never guessed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from . import definitions
from .outcomes import FhirError, Issue, bad_request

_STEP = re.compile(
    r"\.(?P<name>[A-Za-z][A-Za-z0-9_]*)"
    r"|\[(?P<index>\d+)\]"
    r"|\.(?P<func>first|last)\(\)"
    r"|\.where\((?P<where>(?:[^()']|'(?:[^'\\]|\\.)*')*)\)"
)
_CONDITION = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*'((?:[^'\\]|\\.)*)'\s*")


@dataclass
class _Node:
    """One element found by a path: `container[key]` holds it (a list item when `position` is set)."""

    container: dict
    key: str
    position: int | None

    @property
    def value(self) -> object:
        held = self.container[self.key]
        return held[self.position] if self.position is not None else held


def _unprocessable(message: str) -> FhirError:
    return FhirError(422, [Issue("processing", message)])


def _locate(resource: dict, path: object) -> list[_Node | dict]:
    """The elements `path` selects; the resource itself is returned as the bare dict."""
    if not isinstance(path, str) or not path:
        raise bad_request("A FHIRPath Patch operation needs a 'path'")
    root = resource["resourceType"]
    if not path.startswith(root):
        raise bad_request(f"Path '{path}' does not start with the resource type {root}")
    rest = path[len(root) :]
    found: list[_Node | dict] = [resource]
    position = 0
    while position < len(rest):
        step = _STEP.match(rest, position)
        if step is None:
            raise bad_request(f"FHIRPath Patch path '{path}' uses syntax this server does not evaluate")
        position = step.end()
        if step["name"]:
            found = _children(found, step["name"])
        elif step["index"] is not None:
            index = int(step["index"])
            found = found[index : index + 1]
        elif step["func"]:
            found = found[:1] if step["func"] == "first" else found[-1:]
        else:
            found = [node for node in found if _matches(_value(node), step["where"], path)]
    return found


def _value(node: _Node | dict) -> object:
    return node.value if isinstance(node, _Node) else node


def _children(found: list, name: str) -> list[_Node]:
    out = []
    for node in found:
        value = _value(node)
        if not isinstance(value, dict) or name not in value:
            continue
        held = value[name]
        if isinstance(held, list):
            out += [_Node(value, name, i) for i in range(len(held))]
        else:
            out.append(_Node(value, name, None))
    return out


def _matches(value: object, condition: str, path: str) -> bool:
    terms = condition.split(" and ")
    for term in terms:
        parsed = _CONDITION.fullmatch(term)
        if parsed is None:
            raise bad_request(f"FHIRPath Patch path '{path}': where({condition}) is not supported")
        name, literal = parsed[1], parsed[2].replace("\\'", "'")
        if not isinstance(value, dict) or str(value.get(name)) != literal:
            return False
    return True


def _single(resource: dict, path: object, kind: str) -> _Node | dict:
    found = _locate(resource, path)
    if len(found) != 1:
        raise _unprocessable(
            f"{kind}: path '{path}' selects {len(found)} elements; it must select exactly one"
        )
    return found[0]


def _parts(operation: dict, index: int) -> dict[str, dict]:
    parts = {}
    for part in operation.get("part", []):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise bad_request(f"FHIRPath Patch operation {index} has a part without a name")
        parts[part["name"]] = part
    return parts


def _payload(part: dict | None, index: int) -> tuple[object, str | None]:
    """The value of a `value` part and, for a choice `value[x]`, its type suffix (`valueDate` -> Date)."""
    if part is None:
        raise bad_request(f"FHIRPath Patch operation {index} has no value")
    for key, value in part.items():
        if key.startswith("value") and key != "value":
            return copy.deepcopy(value), key[len("value") :]
    if "part" in part:  # an anonymous (backbone) element given as nested parts
        return {p["name"]: _payload(p, index)[0] for p in part["part"]}, None
    raise bad_request(f"FHIRPath Patch operation {index}: the value part carries no value")


def _string(parts: dict, name: str, index: int) -> str:
    part = parts.get(name) or {}
    value = next((v for k, v in part.items() if k.startswith("value")), None)
    if not isinstance(value, str):
        raise bad_request(f"FHIRPath Patch operation {index} needs '{name}'")
    return value


def _integer(parts: dict, name: str, index: int) -> int:
    value = (parts.get(name) or {}).get("valueInteger")
    if type(value) is not int or value < 0:
        raise bad_request(f"FHIRPath Patch operation {index} needs a non-negative integer '{name}'")
    return value


def _list_at(resource: dict, path: str, kind: str) -> tuple[dict, str]:
    """The container and key of the list a path names (insert and move work on whole lists)."""
    head, _, name = path.rpartition(".")
    if not head or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise bad_request(f"{kind}: path '{path}' must end with an element name")
    owner = _single(resource, head, kind)
    container = _value(owner)
    if not isinstance(container, dict):
        raise _unprocessable(f"{kind}: '{head}' is not an element with children")
    return container, name


def apply_fhirpath_patch(resource: dict, parameters: object) -> dict:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch is a Parameters resource")
    doc = copy.deepcopy(resource)
    for index, operation in enumerate(parameters.get("parameter", [])):
        if not isinstance(operation, dict) or operation.get("name") != "operation":
            raise bad_request(f"FHIRPath Patch parameter {index} is not an 'operation'")
        parts = _parts(operation, index)
        kind = (parts.get("type") or {}).get("valueCode")
        path = _string(parts, "path", index)
        if kind == "add":
            name = _string(parts, "name", index)
            value, suffix = _payload(parts.get("value"), index)
            owner = _value(_single(doc, path, "add"))
            if not isinstance(owner, dict):
                raise _unprocessable(f"add: '{path}' is not an element with children")
            key, repeats = _element(doc["resourceType"], path, name, suffix)
            if repeats:
                owner.setdefault(key, []).append(value)
            elif key in owner:
                raise _unprocessable(f"add: '{path}' already has a '{key}'; use replace")
            else:
                owner[key] = value
        elif kind == "insert":
            container, name = _list_at(doc, path, "insert")
            value, _ = _payload(parts.get("value"), index)
            items = container.setdefault(name, [])
            position = _integer(parts, "index", index)
            if not isinstance(items, list) or position > len(items):
                raise _unprocessable(f"insert: index {position} is outside '{path}'")
            items.insert(position, value)
        elif kind == "delete":
            found = _locate(doc, path)
            if len(found) > 1:
                raise _unprocessable(f"delete: path '{path}' selects {len(found)} elements")
            for node in found:
                if not isinstance(node, _Node):
                    raise _unprocessable("delete: the resource itself cannot be deleted")
                _remove(node)
        elif kind == "replace":
            node = _single(doc, path, "replace")
            if not isinstance(node, _Node):
                raise _unprocessable("replace: the resource itself cannot be replaced")
            value, _ = _payload(parts.get("value"), index)
            if node.position is None:
                node.container[node.key] = value
            else:
                node.container[node.key][node.position] = value
        elif kind == "move":
            container, name = _list_at(doc, path, "move")
            items = container.get(name)
            source, destination = _integer(parts, "source", index), _integer(parts, "destination", index)
            if not isinstance(items, list) or source >= len(items) or destination >= len(items):
                raise _unprocessable(f"move: source or destination outside '{path}'")
            items.insert(destination, items.pop(source))
        else:
            raise bad_request(f"FHIRPath Patch operation {index}: unknown type '{kind}'")
    _prune(doc)
    return doc


def _element(resource_type: str, path: str, name: str, suffix: str | None) -> tuple[str, bool]:
    """The JSON key for element `name` under `path`, and whether it repeats, from the R4 definitions:
    a choice element takes its value's type (`deceased` + valueBoolean -> `deceasedBoolean`)."""
    type_name = resource_type
    try:
        for step in re.sub(r"\[\d+\]|\.(first|last)\(\)|\.where\(.*?\)", "", path).split(".")[1:]:
            element = definitions.type_schema(type_name).elements.get(step)
            if element is None or len(element.types) != 1:
                return name, False
            type_name = element.types[0]
        element = definitions.type_schema(type_name).elements.get(name)
    except KeyError:
        return name, False
    if element is None:
        return name, False
    key = name + suffix if element.choice and suffix else name
    return key, element.max is None or element.max > 1


def _prune(node: object) -> bool:
    """Drop the objects and arrays an operation left empty (FHIR JSON has none); True if `node` is empty."""
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if _prune(v)]:
            del node[key]
        return not node
    if isinstance(node, list):
        node[:] = [item for item in node if not _prune(item)]
        return not node
    return False


def _remove(node: _Node) -> None:
    if node.position is None:
        del node.container[node.key]
        return
    items = node.container[node.key]
    del items[node.position]
    if not items:
        del node.container[node.key]
