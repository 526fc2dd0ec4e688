"""One GraphQL request, from its text to its result, as ONE interaction of the door
(https://hl7.org/fhir/R4/graphql.html; audit and door: interactions/graphql.py).

Parsing and validation happen first, outside the door: a request that is not GraphQL, or asks for
a field or argument the schema does not have, never reaches data (it is audited as refused by the
view). A valid one is run inside `execute_search` when its operation selects any list (`TList`),
else inside `execute_read`; either writes the request's single audit row, naming the operation,
with the rules and resources its resolvers' nested door calls noted. An instance-level request
reads its root resource inside the same interaction (a `graphql-read`): missing or unreadable, the
whole request is a 404.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    validate,
)
from graphql.utilities import get_operation_ast

from interactions import graphql as door

from .. import definitions
from . import batching, errors, limits, resolvers
from .result import Executed, refused
from .schema import instance_schema, schema

# Root fields that list resources (a `graphql-search`): `TList` and `TConnection`.
_LISTING = ("List", "Connection")
# GraphQL parsing is recursive: bound what one request may nest (graphql-core's own guard).
_MAX_TOKENS = 20_000


def run(
    ctx,
    *,
    query: str,
    variables: dict | None,
    operation_name: str | None,
    base_url: str,
    resource_type: str | None = None,
    fhir_id: str | None = None,
    method: str = "POST",
) -> Executed:
    """Parse, validate and execute; `resource_type`/`fhir_id` make it an instance-level query;
    `method` is the HTTP method (a mutation needs POST)."""
    if resource_type is not None and resource_type not in definitions.resource_types():
        return refused(f"Unknown resource type '{resource_type}'", 404)
    target = instance_schema(resource_type) if resource_type is not None else schema().graphql_schema
    try:
        document = parse(query, max_tokens=_MAX_TOKENS)
    except GraphQLError as exc:
        return Executed(None, [errors.entry(exc)], 400)
    operation = get_operation_ast(document, operation_name)
    named = _operation(document, operation)
    problems = validate(target, document)
    if problems:
        return Executed(None, [errors.entry(e) for e in problems], 400, named)
    if operation is None:
        message = (
            "Name the operation to run (operationName)"
            if operation_name is None
            else (f"No operation named '{operation_name}'")
        )
        return Executed(None, [{"message": message, "extensions": {"status": 400}}], 400, named)
    if operation.operation == OperationType.SUBSCRIPTION:
        message = "subscription operations are not supported (FHIR Subscriptions are: docs/subscriptions.md)"
        return Executed(None, [{"message": message, "extensions": {"status": 400}}], 400, named)
    if operation.operation == OperationType.MUTATION and method != "POST":
        message = "A mutation is sent with POST"
        return Executed(None, [{"message": message, "extensions": {"status": 405}}], 405, named)
    try:
        limits.check(document, operation, variables)
    except GraphQLError as over:
        return Executed(None, [errors.entry(over)], 400, named)
    request = resolvers.Request(ctx, base_url)

    def execution() -> Executed:
        root = None
        if resource_type is not None:
            root = resolvers.fetch(request, resource_type, fhir_id or "")  # refused: the whole request is
            fragments = {
                d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            batching.prefetch(
                request, batching.Selection(target, fragments, variables), [root], resource_type, [operation]
            )
        result = execute(
            target,
            document,
            root_value=root,
            context_value=request,
            variable_values=variables,
            operation_name=operation_name,
        )
        entries = [errors.entry(e) for e in result.errors or ()]
        return Executed(result.data, entries, _status(result.data, result.errors or []), named)

    # A mutation's writes are interactions of their own (resolvers.Request.writer); the request's
    # reads (references followed from their answers) are its graphql-read.
    interaction = door.execute_search if named == "graphql-search" else door.execute_read
    return interaction(ctx, run=execution, resource_type=resource_type or "", fhir_id=fhir_id or "")


def _status(data: dict | None, problems: list[GraphQLError]) -> int:
    """200 when anything was answered; otherwise the status of the first refusal (for the audit)."""
    if not problems or (data and any(value is not None for value in data.values())):
        return 200
    return errors.status_of(problems[0])


_WRITES = {"Create": "create", "Update": "update", "Delete": "delete"}


def _operation(document: DocumentNode, operation: OperationDefinitionNode | None) -> str:
    """What the request is, for its audit row: graphql-search when it lists, graphql-read for
    other queries; for a mutation, the write its first field is."""
    if operation is None:
        return "graphql-read"
    if operation.operation == OperationType.MUTATION:
        first = next((s for s in operation.selection_set.selections if isinstance(s, FieldNode)), None)
        name = first.name.value if first is not None else ""
        return next((op for suffix, op in _WRITES.items() if name.endswith(suffix)), "create")
    return "graphql-search" if _lists(document, operation) else "graphql-read"


def _lists(document: DocumentNode, operation: OperationDefinitionNode) -> bool:
    """Whether the operation selects a list of resources (`TList`, `TConnection`), through fragments
    too."""
    fragments = {f.name.value: f for f in document.definitions if hasattr(f, "type_condition") and f.name}
    types = definitions.resource_types()
    seen: set[str] = set()
    pending = [operation.selection_set]
    while pending:
        selections = pending.pop()
        if selections is None:
            continue
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if any(name.endswith(kind) and name[: -len(kind)] in types for kind in _LISTING):
                    return True
                pending.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    pending.append(fragment.selection_set)
    return False
