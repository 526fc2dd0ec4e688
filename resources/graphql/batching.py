"""References read per level, not one by one (the N+1 problem of https://hl7.org/fhir/R4/graphql.html
reference resolution).

When a resolver hands back resources (a by-id field, a list, a connection, a reverse reference, the
instance-level root), `prefetch` walks the query's selection over them, finds every reference whose
`resource` the query asks for (honouring fragments, `@skip`/`@include`, `extension(url:)` and
`resource(type:)`), and reads the targets of one level with one `read_many` of the door per type;
then the next level, from the targets' own selections. `Reference.resource` then finds its target in
the request's reads (resolvers.Request.reads). The targets are exactly those the resolvers would read
one by one, decided exactly as such reads, so the answer and the audit row do not change; only the
number of statements does. A caller whose rules allow the whole type gets each level's targets of a
type in one statement; one whose rules decide each resource still costs a statement per target
(selectors.resource_read_many). Reverse references (`XList(_reference:)`) are one search per resource
they are nested under.

Uses graphql-core's `collect_sub_fields` (graphql.execution.collect_fields), the function its
executor uses to group the fields of a selection.
"""

from __future__ import annotations

from graphql import (
    FieldNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
)
from graphql.execution.collect_fields import collect_sub_fields
from graphql.execution.values import get_argument_values

from interactions import graphql as door

from .. import definitions
from ..outcomes import FhirError


class Selection:
    """What the walk needs of an execution: the schema, the fragments and the variables."""

    def __init__(self, schema: GraphQLSchema, fragments: dict, variables: dict | None) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables or {}

    @classmethod
    def of(cls, info) -> Selection:
        return cls(info.schema, info.fragments, info.variable_values)


def prefetch(request, selection: Selection, values: list, type_name: str, nodes: list) -> None:
    """Read, a level at a time, the references the query follows from `values` (resources or other
    objects of GraphQL type `type_name`, selected by `nodes`)."""
    from .resolvers import document, local_target

    object_type = selection.schema.type_map.get(type_name)
    if not isinstance(object_type, GraphQLObjectType):
        return
    level = [(value, object_type, nodes) for value in values if isinstance(value, dict)]
    while level:
        wanted: dict[tuple[str, str], list[list[FieldNode]]] = {}
        for value, gtype, field_nodes in level:
            _walk(selection, request, value, gtype, field_nodes, wanted, local_target)
        missing: dict[str, list[str]] = {}
        for resource_type, fhir_id in wanted:
            if (resource_type, fhir_id) not in request.reads:
                missing.setdefault(resource_type, []).append(fhir_id)
        for resource_type, fhir_ids in missing.items():
            if resource_type not in definitions.resource_types():
                continue  # left to the field's own read, which refuses it
            answers = door.read_many(request.ctx, resource_type=resource_type, fhir_ids=fhir_ids)
            for fhir_id, answer in answers.items():
                request.reads[(resource_type, fhir_id)] = (
                    answer if isinstance(answer, FhirError) else document(answer.body)
                )
        level = []
        for key, node_lists in wanted.items():
            target = request.reads.get(key)
            if isinstance(target, dict):
                runtime = selection.schema.type_map.get(target.get("resourceType"))
                if isinstance(runtime, GraphQLObjectType):
                    level += [(target, runtime, field_nodes) for field_nodes in node_lists]


def _walk(selection: Selection, request, value: dict, gtype, nodes, wanted: dict, local_target) -> None:
    fields = collect_sub_fields(selection.schema, selection.fragments, selection.variables, gtype, nodes)
    for field_nodes in fields.values():
        name = field_nodes[0].name.value
        field = gtype.fields.get(name)
        if field is None:
            continue  # __typename
        arguments = get_argument_values(field, field_nodes[0], selection.variables) if field.args else {}
        if gtype.name == "Reference" and name == "resource":
            reference = value.get("reference")
            if isinstance(reference, str) and not reference.startswith("#"):
                target = local_target(reference, request.base_url)
                if target is not None and (not arguments.get("type") or arguments["type"] == target[0]):
                    wanted.setdefault(target, []).append(field_nodes)
            continue
        if "_reference" in field.args:
            continue  # a reverse reference: a search of its own, which prefetches its results
        named = get_named_type(field.type)
        child = value.get(name)
        if child is None or not isinstance(named, (GraphQLObjectType, GraphQLInterfaceType)):
            continue
        items = child if isinstance(child, list) else [child]
        if name in ("extension", "modifierExtension") and arguments.get("url") is not None:
            items = [e for e in items if isinstance(e, dict) and e.get("url") == arguments["url"]]
        for item in items:
            if not isinstance(item, dict):
                continue
            runtime = named
            if isinstance(named, GraphQLInterfaceType):
                runtime = selection.schema.type_map.get(item.get("resourceType"))
            if isinstance(runtime, GraphQLObjectType):
                _walk(selection, request, item, runtime, field_nodes, wanted, local_target)
