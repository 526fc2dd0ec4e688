"""An operation's input as a Parameters resource (https://hl7.org/fhir/R4/parameters.html): each
name at most once, only the names the operation knows, each with a value of its declared type."""

from __future__ import annotations

from django.http import HttpRequest

from ..outcomes import bad_request
from .http import read_body


def read_parameters(request: HttpRequest, value_keys: dict[str, tuple[str, ...]], *, operation: str) -> dict:
    """{name: value} from the request's Parameters body (an empty body: no parameters).
    `value_keys[name]` lists the `value[x]` keys accepted for that name, the first preferred."""
    if not request.body.strip():
        return {}
    body = read_body(request)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request(f"The input of {operation} is a Parameters resource")
    found: dict = {}
    for index, parameter in enumerate(body.get("parameter") or []):
        where = (f"Parameters.parameter[{index}]",)
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if not isinstance(name, str):
            raise bad_request("Every Parameters.parameter needs a name", expression=where)
        if name not in value_keys:
            raise bad_request(
                f"Unknown parameter '{name}' (expected: {', '.join(value_keys)})", expression=where
            )
        if name in found:
            raise bad_request(f"Parameter '{name}' is given more than once", expression=where)
        key = next((k for k in value_keys[name] if k in parameter), None)
        if key is None:
            raise bad_request(f"Parameter '{name}' needs a {value_keys[name][0]}", expression=where)
        found[name] = parameter[key]
    return found
