"""Validators of access rules, by the name a rule file uses, and `build` from that YAML form.

A spec is a validator's name (`PatientCompartment`) or a mapping of one name to its parameters
(`{LegitimateInterest: {inherit: true}}`, `{AnyOf: [PatientCompartment, CareTeam]}`). What each one
grants is in its module's docstring; the interface is in base.py.
"""

from __future__ import annotations

from .allowed import Allowed, Forbidden
from .base import RuleError, Validator
from .care_team import CareTeam
from .compartments import (
    DeviceCompartment,
    PatientCompartment,
    PractitionerCompartment,
    RelatedPersonCompartment,
)
from .composite import AllOf, AnyOf
from .fhirpath import FhirPath
from .general_practitioner import GeneralPractitioner
from .legitimate_interest import LegitimateInterest
from .subscriber import Subscriber

REGISTRY: dict[str, type[Validator]] = {
    cls.name: cls
    for cls in (
        Allowed,
        Forbidden,
        PatientCompartment,
        PractitionerCompartment,
        RelatedPersonCompartment,
        DeviceCompartment,
        LegitimateInterest,
        CareTeam,
        GeneralPractitioner,
        FhirPath,
        Subscriber,
        AnyOf,
        AllOf,
    )
}

_COMPOSITES = (AnyOf, AllOf)


def build(spec: object) -> Validator:
    """The validator a rule's `validator:` value describes; RuleError when it describes none."""
    if isinstance(spec, str):
        name, params = spec, None
    elif isinstance(spec, dict) and len(spec) == 1:
        ((name, params),) = spec.items()
    else:
        raise RuleError(
            f"a validator is a name or a mapping of one name to its parameters (got {spec!r:.100})"
        )
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise RuleError(f"unknown validator {name!r:.100} (known: {', '.join(sorted(REGISTRY))})")
    if issubclass(cls, _COMPOSITES):
        return cls(params)
    if params is None:
        return cls()
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise RuleError(f"the parameters of {name} are a mapping of names to values (got {params!r:.100})")
    return cls(**params)


__all__ = ["REGISTRY", "RuleError", "Validator", "build"]
