"""What one GraphQL request may ask for, checked on the query before anything runs (the issue's
limits; https://hl7.org/fhir/R4/search.html#errors `too-costly` for the refusal's code):

- depth (`FHIR_GRAPHQL_MAX_DEPTH`): fields nested in fields, fragments expanded;
- fields (`FHIR_GRAPHQL_MAX_FIELDS`): field selections in the query, fragments expanded each time
  they are used (so a fragment spread many times counts many times);
- cost (`FHIR_GRAPHQL_MAX_COST`): an estimate of the resources the door is asked for: a by-id
  field or a reference's `resource` costs 1, a list costs the rows it reads (`_count`, default
  FHIR_DEFAULT_COUNT, plus `_offset`) and multiplies what is nested under it by that; a mutation
  costs 1. References are not batched yet, so this is
  also a bound on the number of reads one request makes.

Over a limit is one GraphQL error naming the limit (status 400, code too-costly), never a timeout.
The database time of each statement is bounded as for any request (resources/limits.py).
"""

from __future__ import annotations

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from .. import definitions


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


class _Walk:
    def __init__(self, document: DocumentNode, variables: dict | None) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variables = variables or {}
        self.types = definitions.resource_types()
        self.fields = 0
        self.depth = 0
        self.cost = 0
        self.max_fields = _setting("FHIR_GRAPHQL_MAX_FIELDS", 5000)

    def selections(
        self, selection_set: SelectionSetNode | None, depth: int, factor: int, stack: tuple, parent: str = ""
    ) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.field(selection, depth + 1, factor, stack, parent)
            elif isinstance(selection, InlineFragmentNode):
                self.selections(selection.selection_set, depth, factor, stack, parent)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in stack:  # a cycle is the validator's to report
                    self.selections(fragment.selection_set, depth, factor, (*stack, name), parent)

    def field(self, node: FieldNode, depth: int, factor: int, stack: tuple, parent: str) -> None:
        self.fields += 1
        if self.fields > self.max_fields:
            raise _over("fields", "FHIR_GRAPHQL_MAX_FIELDS", self.max_fields)
        self.depth = max(self.depth, depth)
        name = node.name.value
        if any(name.endswith(kind) and name[: -len(kind)] in self.types for kind in ("List", "Connection")):
            count = self.count(node)
            self.cost += factor * count
            factor *= max(count, 1)
        elif (
            name in self.types
            or (name == "resource" and parent != "edges" and node.selection_set is not None)
            or (depth == 1 and name.endswith(("Create", "Update", "Delete")))
        ):
            self.cost += factor  # a read (an edge's `resource` is its page's own row)
        self.selections(node.selection_set, depth, factor, stack, name)

    def count(self, node: FieldNode) -> int:
        """The rows a list reads: `_count` (or the default) plus the `_offset` it skips."""
        given = {a.name.value: self.integer(a.value) for a in node.arguments or ()}
        count = given.get("_count")
        return (settings.FHIR_DEFAULT_COUNT if count is None else count) + (given.get("_offset") or 0)

    def integer(self, value) -> int | None:
        if isinstance(value, IntValueNode):
            return max(int(value.value), 0)
        if isinstance(value, VariableNode):
            given = self.variables.get(value.name.value)
            if isinstance(given, int) and not isinstance(given, bool):
                return max(given, 0)
        return None


def _over(what: str, setting: str, limit: int) -> GraphQLError:
    return GraphQLError(
        f"The query asks for more {what} than this server allows ({setting} = {limit})",
        extensions={"status": 400, "code": "too-costly"},
    )


def check(document: DocumentNode, operation: OperationDefinitionNode, variables: dict | None) -> None:
    """Raise a GraphQLError naming the first limit the operation is over."""
    walk = _Walk(document, variables)
    walk.selections(operation.selection_set, 0, 1, ())
    depth = _setting("FHIR_GRAPHQL_MAX_DEPTH", 15)
    if walk.depth > depth:
        raise _over("nesting (depth)", "FHIR_GRAPHQL_MAX_DEPTH", depth)
    cost = _setting("FHIR_GRAPHQL_MAX_COST", 2000)
    if walk.cost > cost:
        raise GraphQLError(
            f"The query would read about {walk.cost} resources; this server answers at most {cost} in "
            "one request (FHIR_GRAPHQL_MAX_COST): ask for fewer (_count) or nest fewer references",
            extensions={"status": 400, "code": "too-costly"},
        )
