"""The FHIR GraphQL schema, generated from the project's R4 definitions
(https://hl7.org/fhir/R4/graphql.html#schema; the definitions: resources/definitions/).

Every resource type, datatype and backbone element is an object type named as in FHIR, a backbone
element after its path without dots (`Patient.contact` -> `PatientContact`); the fields are the JSON
properties (https://hl7.org/fhir/R4/json.html): a choice element is one field per type
(`valueQuantity`, `valueString`...), a primitive element `x` has its scalar (scalars.py) and `_x` of
type `Element` for its id and extensions, `extension` and `modifierExtension` take a `url` argument.
Every resource type implements the `Resource` interface (`resourceType`, `id`, `meta`,
`implicitRules`, `language`), which is also the type of `contained` and of `Reference.resource`:
inline fragments (`... on Patient`) select per type.

The query root (https://hl7.org/fhir/R4/graphql.html#searching): for each type `T`, `T(id:)`,
`TList(...)` whose arguments are T's search parameters (`-` written `_`) plus `_count`, `_offset`
and `_sort`, and `TConnection(...)` (the same parameters with `_count`, `_cursor` and `_sort`),
whose `TEdge`s carry `mode`, `score` and the `resource`. On every resource type, the reverse
references: `XList(_reference: p, ...)` for each type X with a reference parameter `p` that may
point to it. An instance-level query ([base]/[T]/[id]/$graphql) has T itself as its root
(`instance_schema`).

Built once per process (`schema()`, under a lock) and reused by every request and thread: about
660 types; `python manage.py graphql_schema --stats` prints the build time and memory.
"""

from __future__ import annotations

import functools
import keyword
import threading

import graphene
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    GraphQLString,
)

from .. import definitions
from . import resolvers
from .scalars import PARAMETER_NAME, ResourceInput, scalars

RESULT_ARGUMENTS = ("_count", "_offset", "_sort")
_lock = threading.Lock()


def type_name(structure: str) -> str:
    """The GraphQL name of a FHIR type or backbone path (`Patient.contact` -> `PatientContact`)."""
    head, *rest = structure.split(".")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def argument_name(code: str) -> str:
    """A search parameter as a GraphQL argument (graphql.html#searching: `-` written `_`)."""
    return code.replace("-", "_")


def search_arguments(resource_type: str) -> dict[str, str]:
    """GraphQL argument name -> search parameter code, for the parameters of `resource_type` that a
    GraphQL name can carry."""
    out = {}
    for code in definitions.search_parameters(resource_type):
        name = argument_name(code)
        if name.isidentifier() and not name.startswith("__") and name not in RESULT_ARGUMENTS:
            out[name] = code
    return out


class _Builder:
    """Turns the definitions into graphene types; `objects` maps a FHIR structure to its type."""

    def __init__(self) -> None:
        self.scalars = scalars(definitions.primitive_types())
        self.objects: dict[str, type] = {}
        self.resource = self._resource_interface()

    def build(self) -> graphene.Schema:
        names: dict[str, str] = {}
        for structure in sorted(definitions.structure_names()):
            if structure in ("Resource", "DomainResource"):
                continue  # abstract: the `Resource` interface stands for them
            name = type_name(structure)
            if (
                name in names
                or name in self.scalars
                or name == "Resource"
                or name.endswith(("Edge", "Connection"))
            ):
                raise RuntimeError(f"GraphQL type name {name} given to {structure} and {names.get(name)}")
            names[name] = structure
        for structure in names.values():
            self.objects[structure] = self._object(structure)
        query = self._query()
        built = graphene.Schema(
            query=query,
            mutation=self._mutation(),
            types=[self.objects[t] for t in sorted(definitions.resource_types())],
            auto_camelcase=False,
        )
        _add_reverse_references(built.graphql_schema)
        built.graphql_schema.type_map[PARAMETER_NAME.name] = PARAMETER_NAME
        return built

    # --- types ------------------------------------------------------------------------------------

    def _resource_interface(self) -> type:
        builder = self

        def resolve_type(cls, instance, info):
            return builder.objects.get(instance.get("resourceType")) if isinstance(instance, dict) else None

        return type(
            "Resource",
            (graphene.Interface,),
            {
                "Meta": type("Meta", (), {"name": "Resource"}),
                "resourceType": graphene.String(),
                "id": graphene.ID(),
                "meta": graphene.Field(lambda: self.objects["Meta"]),
                "implicitRules": graphene.Field(self.scalars["uri"]),
                "language": graphene.Field(self.scalars["code"]),
                "resolve_type": classmethod(resolve_type),
            },
        )

    def _target(self, type_code: str):
        if type_code in self.scalars:
            return self.scalars[type_code]
        if type_code == "Resource":
            return self.resource
        return lambda: self.objects[type_code]

    def _object(self, structure: str) -> type:
        schema = definitions.type_schema(structure)
        attrs: dict = {}
        for element in schema.elements.values():
            for type_code in element.types:
                key = element.json_key(type_code)
                target = self._target(type_code)
                if element.name in ("extension", "modifierExtension"):
                    attrs[key] = graphene.List(
                        target, url=graphene.String(), resolver=resolvers.extensions(key)
                    )
                elif element.repeats:
                    attrs[key] = graphene.List(target)
                else:
                    attrs[key] = graphene.Field(target)
                if type_code in self.scalars:
                    element_type = lambda: self.objects["Element"]  # noqa: E731
                    attrs["_" + key] = (
                        graphene.List(element_type) if element.repeats else graphene.Field(element_type)
                    )
        for key in [k for k in attrs if keyword.iskeyword(k)]:
            # `Encounter.class`, `Task.for`...: graphene keeps fields as Python attributes.
            field = attrs.pop(key)
            field.name = key
            field.resolver = resolvers.prop(key)
            attrs[key + "_"] = field
        meta: dict = {"name": type_name(structure)}
        if schema.kind == "resource":
            attrs["resourceType"] = graphene.String()
            meta["interfaces"] = (self.resource,)
        if structure == "Reference":
            attrs["resource"] = graphene.Field(
                self.resource,
                optional=graphene.Boolean(),
                type=graphene.String(),
                resolver=resolvers.reference_resource,
            )
        attrs["Meta"] = type("Meta", (), meta)
        return type(type_name(structure), (graphene.ObjectType,), attrs)

    def _connection(self, resource_type: str) -> type:
        """`TConnection` and `TEdge` (graphql.html#searching, "Connections")."""
        edge = type(
            f"{resource_type}Edge",
            (graphene.ObjectType,),
            {
                "Meta": type("Meta", (), {"name": f"{resource_type}Edge"}),
                "mode": graphene.String(),
                "score": graphene.Float(),
                "resource": graphene.Field(self.objects[resource_type]),
            },
        )
        return type(
            f"{resource_type}Connection",
            (graphene.ObjectType,),
            {
                "Meta": type("Meta", (), {"name": f"{resource_type}Connection"}),
                "count": graphene.Int(description="The number of matches (counted only when asked for)"),
                "offset": graphene.Int(description="The position of this page's first match"),
                "pagesize": graphene.Int(),
                "first": graphene.String(description="A _cursor for the first page"),
                "previous": graphene.String(description="A _cursor for the previous page, if any"),
                "next": graphene.String(description="A _cursor for the next page, if any"),
                "last": graphene.String(description="Not offered: pages are keyset pages; always null"),
                "edges": graphene.List(edge),
            },
        )

    # --- the query root ----------------------------------------------------------------------------

    def _query(self) -> type:
        attrs: dict = {}
        for resource_type in sorted(definitions.resource_types()):
            target = self.objects[resource_type]
            attrs[resource_type] = graphene.Field(
                target, id=graphene.ID(required=True), resolver=resolvers.by_id(resource_type)
            )
            # Passed as `args`: parameters such as `name` or `source` would clash with Field's own.
            arguments = {name: graphene.List(graphene.String) for name in search_arguments(resource_type)}
            arguments.update(_count=graphene.Int(), _offset=graphene.Int(), _sort=graphene.String())
            attrs[f"{resource_type}List"] = graphene.Field(
                graphene.List(target),
                args=arguments,
                resolver=resolvers.listing(resource_type, search_arguments(resource_type)),
            )
            paged = {name: graphene.List(graphene.String) for name in search_arguments(resource_type)}
            paged.update(_count=graphene.Int(), _cursor=graphene.String(), _sort=graphene.String())
            attrs[f"{resource_type}Connection"] = graphene.Field(
                self._connection(resource_type),
                args=paged,
                resolver=resolvers.connection(resource_type, search_arguments(resource_type)),
            )
        attrs["Meta"] = type("Meta", (), {"name": "Query"})
        return type("Query", (graphene.ObjectType,), attrs)

    def _mutation(self) -> type:
        """`TCreate(res:)`, `TUpdate(id:, res:)`, `TDelete(id:)` (graphql.html#mutations): each
        answers the resource as the caller's graphql-read shows it (null when it may not read it);
        a delete answers an OperationOutcome."""
        attrs: dict = {}
        outcome = self.objects["OperationOutcome"]
        for resource_type in sorted(definitions.resource_types()):
            target = self.objects[resource_type]
            attrs[f"{resource_type}Create"] = graphene.Field(
                target,
                res=graphene.Argument(ResourceInput, required=True),
                resolver=resolvers.creating(resource_type),
            )
            attrs[f"{resource_type}Update"] = graphene.Field(
                target,
                id=graphene.ID(required=True),
                res=graphene.Argument(ResourceInput, required=True),
                resolver=resolvers.updating(resource_type),
            )
            attrs[f"{resource_type}Delete"] = graphene.Field(
                outcome, id=graphene.ID(required=True), resolver=resolvers.deleting(resource_type)
            )
        attrs["Meta"] = type("Meta", (), {"name": "Mutation"})
        return type("Mutation", (graphene.ObjectType,), attrs)


def reverse_targets(resource_type: str) -> dict[str, frozenset[str]]:
    """The reference search parameters of `resource_type` (GraphQL name -> code) and the types each
    may point to (every type for a parameter without declared targets)."""
    out = {}
    for code, param in definitions.search_parameters(resource_type).items():
        if param.type == "reference":
            targets = frozenset(param.targets) if param.targets else definitions.resource_types()
            out[argument_name(code)] = targets & definitions.resource_types()
    return out


def _add_reverse_references(built: GraphQLSchema) -> None:
    """`XList(_reference: p, ...)` on every resource type T that a reference parameter `p` of X may
    point to (graphql.html#reverse-references): the X whose `p` is T/[its id]. About 5,700 fields:
    added to the graphql-core types directly, each X's arguments shared by all its fields, where
    graphene would build 140,000 argument objects."""
    for source in sorted(definitions.resource_types()):
        references = reverse_targets(source)
        if not references:
            continue
        arguments = {name: GraphQLArgument(GraphQLList(GraphQLString)) for name in search_arguments(source)}
        arguments["_reference"] = GraphQLArgument(
            GraphQLNonNull(PARAMETER_NAME),
            description=f"The reference parameter of {source} that names the resource: "
            + ", ".join(sorted(references)),
        )
        arguments.update(_count=GraphQLArgument(GraphQLInt), _offset=GraphQLArgument(GraphQLInt))
        arguments["_sort"] = GraphQLArgument(GraphQLString)
        resolve = resolvers.reverse(source, search_arguments(source), references)
        listed = GraphQLList(built.type_map[source])
        for target in sorted({t for targets in references.values() for t in targets}):
            built.type_map[target].fields[f"{source}List"] = GraphQLField(
                listed, args=arguments, resolve=resolve
            )


def schema() -> graphene.Schema:
    """The system-level schema, built on first use and kept for the life of the process."""
    built = _built()
    if built is None:
        with _lock:
            built = _built()
            if built is None:
                built = _Builder().build()
                _cache["schema"] = built
    return built


_cache: dict[str, graphene.Schema] = {}


def _built() -> graphene.Schema | None:
    return _cache.get("schema")


@functools.cache
def instance_schema(resource_type: str) -> GraphQLSchema:
    """The schema of an instance-level query: `resource_type` is the root, sharing every type of the
    system schema (nothing is rebuilt)."""
    system = schema().graphql_schema
    return GraphQLSchema(query=system.get_type(resource_type), types=list(system.type_map.values()))
