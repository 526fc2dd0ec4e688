"""`Allowed` grants every resource the rule covers; `Forbidden` grants none.

They need no identity and no lookup: `Allowed` narrows to everything (an empty Q), `Forbidden` to
nothing (a Q no row matches), so either can stand in a rule chain or inside AnyOf/AllOf. Access
control in FHIR is left to the server (https://hl7.org/fhir/R4/security.html); these are the two
constant answers of this server's rule engine. For writes, `Allowed` lets the caller place data in
every Patient compartment and rests on nothing that a write could change; `Forbidden` allows no write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q

from .base import EVERYTHING, NOTHING, Validator

if TYPE_CHECKING:
    from authz.context import AccessContext


class Allowed(Validator):
    name = "Allowed"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        return EVERYTHING

    def depends_only_on_identity(self, ctx: AccessContext) -> bool:
        return True

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        return None  # every compartment of the types the rule covers


class Forbidden(Validator):
    name = "Forbidden"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        return NOTHING

    def depends_only_on_identity(self, ctx: AccessContext) -> bool:
        return True
