"""Write hooks: what other apps attach to every write of the store, inside the write's transaction.

The store knows nothing of subscriptions or schedules; apps that must see every change register
here from their `AppConfig.ready()`:

- a *type hook* for one resource type: `prepare(ctx, body, previous)` runs after validation and
  before storing (it may refuse with a FhirError or return the body to store plus a note for later);
  `stored(ctx, stored, note)` runs after the row is written, before the result's access is checked
  (so a validator that depends on what it records sees it); `deleted(ctx, resource_type, fhir_id, pk)`
  after a delete. The Subscription resource's checks and its delivery state live in such a hook.
- a *change hook*, called once per write statement with every resource it created, updated or
  deleted (`Change` items): the outbox that subscriptions deliver from is written here, so every
  path that writes (REST, transactions, GraphQL, workers, loaders) leaves its events in the same
  transaction as the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authz.context import AccessContext


@dataclass(frozen=True)
class Change:
    """One committed create, update or delete: which version of which resource."""

    action: str  # "create", "update" or "delete"
    resource_type: str
    fhir_id: str
    version: int
    pk: int


@dataclass(frozen=True)
class TypeHook:
    prepare: Callable[[AccessContext, dict, dict | None], tuple[dict, Any]]
    stored: Callable[[AccessContext, Any, Any], None]
    deleted: Callable[[AccessContext, str, str, int], None]


_type_hooks: dict[str, TypeHook] = {}
_change_hooks: list[Callable[[list[Change]], None]] = []


def register_type(resource_type: str, hook: TypeHook) -> None:
    _type_hooks[resource_type] = hook


def register_changes(hook: Callable[[list[Change]], None]) -> None:
    if hook not in _change_hooks:
        _change_hooks.append(hook)


def prepare(ctx: AccessContext, resource_type: str, body: dict, previous: dict | None) -> tuple[dict, Any]:
    hook = _type_hooks.get(resource_type)
    return hook.prepare(ctx, body, previous) if hook else (body, None)


def stored(ctx: AccessContext, one: Any, note: Any) -> None:
    hook = _type_hooks.get(one.resource_type)
    if hook:
        hook.stored(ctx, one, note)


def deleted(ctx: AccessContext, resource_type: str, fhir_id: str, pk: int) -> None:
    hook = _type_hooks.get(resource_type)
    if hook:
        hook.deleted(ctx, resource_type, fhir_id, pk)


def changed(changes: Iterable[Change]) -> None:
    listed = list(changes)
    if listed:
        for hook in _change_hooks:
            hook(listed)


_WARNINGS = ("write-warnings",)


def warn(ctx: AccessContext, text: str) -> None:
    """A warning about the write being made (a part the server accepts but cannot act on), for the
    writer's answer (interactions/write.py hands it back)."""
    ctx.cache.setdefault(_WARNINGS, []).append(text)


def warnings(ctx: AccessContext) -> tuple[str, ...]:
    return tuple(ctx.cache.get(_WARNINGS, ()))
