"""An audit log row as an R4 AuditEvent, shaped after the IHE Basic Audit Log Patterns.

- AuditEvent: https://hl7.org/fhir/R4/auditevent.html
- BALP (IHE ITI Basic Audit Log Patterns): https://profiles.ihe.net/ITI/BALP/ — the RESTful
  activity profiles Create, Read, Update, Delete and Query (and their Patient* variants):
  https://profiles.ihe.net/ITI/BALP/content.html#3573-restful-activities

What goes where:

- `type` audit-event-type#rest; `subtype` the restful-interaction code of the request
  (https://hl7.org/fhir/R4/codesystem-restful-interaction.html); `action` C/R/U/D/E as BALP sets it
  per profile (a search is E, "Execute", as in BALP Query).
- `outcome` 0 (success), 4 (minor failure: a 4xx refusal) or 8 (serious failure: a 5xx), with the
  refusal's diagnostics in `outcomeDesc` (https://hl7.org/fhir/R4/valueset-audit-event-outcome.html).
- `agent`: the caller, `requestor: true`, with its network address; its `type` is the BALP "client"
  role for the interaction (DICOM Source Role ID 110153 for create/update/query, Destination Role ID
  110152 for read, Application 110150 for delete). The OAuth client application, when the caller is
  a user acting through one, and the actor of a delegated JWT (`act` claim) follow as further agents.
  The server is the last agent (BALP "server" role), and the `source.observer` ("fhirplatform").
- `meta.tag` carries `server_entries.SERVER_TAG`, and the id is the row's key (digits only): what
  sets the server's entries apart from the AuditEvents clients store beside them.
- `entity`: the X-Request-Id (BALP `transaction` entity), each patient whose compartment the request
  touched (role 1 Patient, from AuditPatient), each resource returned or written (role 4 Domain
  Resource, `what` a versioned reference when the version is known), and for searches the query
  (type 2 System Object, role 24 Query, `query` the base64 of the raw query string as BALP asks, so
  that even malformed or malicious requests are preserved exactly).
- The access rule that authorised the request is the policy under which the caller acted: its name
  is in the caller agent's `policy` (as a `urn:fhirplatform:rule:` URI) and, verbatim with the
  property filters it applied, in extensions (`RULE_EXTENSION`, `FILTER_EXTENSION`), which is
  where BALP leaves room (its Query and Delete profiles forbid `entity.detail`).

The input is a plain mapping of the AuditEntry columns plus `patients` (a list of ids), so the
exporter can stream rows from `.values()` without building model instances; `from_entry` adapts a
model instance.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import quote, urlsplit

from django.conf import settings

from resources import fhirjson

from .server_entries import SERVER_TAG

SERVER_NAME = "fhirplatform"

EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "Restful Operation",
}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
# Operations of this server that are not restful-interaction codes (their subtype is "operation").
OPERATION_SYSTEM = "urn:fhirplatform:operation"

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
SOURCE_ROLE = {"system": _DCM, "code": "110153", "display": "Source Role ID"}
DESTINATION_ROLE = {"system": _DCM, "code": "110152", "display": "Destination Role ID"}
APPLICATION = {"system": _DCM, "code": "110150", "display": "Application"}
CUSTODIAN = {
    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
    "code": "custodian",
    "display": "Custodian",
}

ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
PERSON = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PATIENT_ROLE = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
DOMAIN_RESOURCE_ROLE = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
QUERY_ROLE = {"system": OBJECT_ROLE, "code": "24", "display": "Query"}
REQUEST_ID = {
    "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
    "code": "XrequestId",
}
OBSERVER_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
    "code": "4",
    "display": "Application Server",
}

EXTENSION_BASE = "urn:fhirplatform:audit:"
RULE_EXTENSION = EXTENSION_BASE + "rule"
RULES_VERSION_EXTENSION = EXTENSION_BASE + "rules-version"  # the rule set's version that decided
FILTER_EXTENSION = EXTENSION_BASE + "filter"
STATUS_EXTENSION = EXTENSION_BASE + "http-status"
RESULT_EXTENSION = EXTENSION_BASE + "result"  # success | failure | denied, which `outcome` 4 merges
USER_AGENT_EXTENSION = EXTENSION_BASE + "user-agent"
RULE_POLICY = "urn:fhirplatform:rule:"

# operation -> (restful-interaction code, action). search and history depend on the level.
_INTERACTIONS = {
    "read": ("read", "R"),
    "vread": ("vread", "R"),
    "update": ("update", "U"),
    "patch": ("patch", "U"),
    "delete": ("delete", "D"),
    "create": ("create", "C"),
    # POST [base] carries a batch or a transaction; the row does not say which (the Bundle's type is
    # not kept), and the server authorises both as "transaction".
    "transaction": ("transaction", "E"),
}

# The subtypes a search can ask for (AuditEvent `subtype`), as conditions on the row's operation.
SUBTYPES = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search-type",
    "search-system",
    "transaction",
    "operation",
)


def interaction(operation: str, resource_type: str, resource_id: str) -> tuple[str, str]:
    """(restful-interaction code, action) of a row's operation."""
    known = _INTERACTIONS.get(operation)
    if known is not None:
        return known
    if operation == "search":
        return ("search-type" if resource_type else "search-system"), "E"
    if operation == "history":
        if resource_id:
            return "history-instance", "R"
        return ("history-type" if resource_type else "history-system"), "R"
    # $everything, GraphQL, $export, $subscribe, $api-token...: FHIR operations, executed.
    return "operation", "E"


def outcome_code(outcome: str, status: int) -> str:
    """audit-event-outcome: 0 success, 4 minor failure (the request was refused: 4xx), 8 serious
    failure (the server failed: 5xx)."""
    if outcome == "success" and status < 400:
        return "0"
    return "8" if status >= 500 else "4"


def _text(value: object, limit: int | None = None) -> str | None:
    """A FHIR string, or None: FHIR strings need non-whitespace content and exclude \\v and \\f."""
    if value is None:
        return None
    text = str(value).replace("\x0b", " ").replace("\x0c", " ")
    if limit is not None:
        text = text[:limit]
    return text if text.strip() else None


def instant(moment: datetime) -> str:
    return fhirjson.instant(moment)


def reference_of(item: str) -> str:
    """A `results` item ("Type/id@version" or "Type/id") as a reference, versioned when it can be."""
    target, _, version = item.partition("@")
    return f"{target}/_history/{version}" if version else target


def _server_host() -> str | None:
    base = settings.FHIR_BASE_URL
    return urlsplit(base).hostname if base else None


def audit_event(row: Mapping) -> dict:
    """The AuditEvent of one audit row: every AuditEntry column by name, plus `patients` (ids)."""
    code, action = interaction(row["operation"], row["resource_type"], row["resource_id"])
    status = int(row["status"])
    recorded = instant(row["time"])
    host = _server_host()
    event: dict = {
        "resourceType": "AuditEvent",
        "id": str(row["id"]),
        # The log is append-only: every row has one version, forever. The tag sets the server's
        # entries apart from the AuditEvents clients store (server_entries.py).
        "meta": {"versionId": "1", "lastUpdated": recorded, "tag": [SERVER_TAG]},
    }
    extensions = _extensions(row)
    if extensions:
        event["extension"] = extensions
    subtype = [{"system": INTERACTION_SYSTEM, "code": code, "display": code}]
    if code == "operation" and row["operation"]:
        subtype.append({"system": OPERATION_SYSTEM, "code": row["operation"]})
    event.update(
        {
            "type": EVENT_TYPE,
            "subtype": subtype,
            "action": action,
            "recorded": recorded,
            "outcome": outcome_code(row["outcome"], status),
        }
    )
    description = _text(row["reason"]) or (None if status < 400 else f"HTTP {status}")
    if description:
        event["outcomeDesc"] = description
    event["agent"] = _agents(row, code, host)
    source: dict = {"observer": {"display": SERVER_NAME}, "type": [OBSERVER_TYPE]}
    if host:
        source = {"site": host, **source}
    event["source"] = source
    entities = _entities(row, code)
    if entities:
        event["entity"] = entities
    return event


def _extensions(row: Mapping) -> list[dict]:
    out = [{"url": RULE_EXTENSION, "valueString": name} for name in _rules(row["rule"])]
    if row.get("rules_version") is not None:
        out.append({"url": RULES_VERSION_EXTENSION, "valueInteger": int(row["rules_version"])})
    out += [
        {"url": FILTER_EXTENSION, "valueString": text}
        for text in (_text(f) for f in (row["filters"] or "").split(","))
        if text
    ]
    out.append({"url": RESULT_EXTENSION, "valueCode": row["outcome"]})
    out.append({"url": STATUS_EXTENSION, "valueInteger": int(row["status"])})
    agent = _text(row["user_agent"])
    if agent:
        out.append({"url": USER_AGENT_EXTENSION, "valueString": agent})
    return out


def _rules(rule: str) -> list[str]:
    return [name for name in (_text(part) for part in (rule or "").split(",")) if name]


def _agents(row: Mapping, code: str, host: str | None) -> list[dict]:
    # BALP roles: the client is the Source of a create/update/query (the request flows from it),
    # the Destination of a read (the data flows to it), the Application of a delete; the server
    # takes the other side (Custodian for a delete).
    if code in ("read", "vread") or code.startswith("history"):
        client_type, server_type = DESTINATION_ROLE, SOURCE_ROLE
    elif code == "delete":
        client_type, server_type = APPLICATION, CUSTODIAN
    else:
        client_type, server_type = SOURCE_ROLE, DESTINATION_ROLE

    identity = _text(row["identity"])
    user = _text(row["user"])
    client_id = _text(row["client_id"])
    role = _text(row["role"])
    if identity:
        who: dict = {"reference": identity}
        if user:
            who["display"] = user
    else:
        # Operators and service accounts have no FHIR identity: who they are is the user, the
        # OAuth client, or at least the role and the credential that authenticated them.
        label = user or client_id or (f"{role} ({row['credential']})" if row["credential"] else role)
        who = {"display": _text(label) or "anonymous"}
    # One coding: BALP slices agents by `type`, and the caller is its "client" (the user of BALP's
    # "user" slice and the client are one party here, hence `requestor` and `network` together).
    caller: dict = {"type": {"coding": [client_type]}}
    if role:
        caller["role"] = [{"text": role}]
    caller["who"] = who
    credential = _text(row["credential"])
    if credential:
        caller["altId"] = credential
    if user:
        caller["name"] = user
    caller["requestor"] = True
    policies = [RULE_POLICY + quote(name, safe="") for name in _rules(row["rule"])]
    if policies:
        caller["policy"] = policies
    if row["client_ip"]:
        # audit-event-network-type 2: IP address (GenericIPAddressField holds v4 or v6).
        caller["network"] = {"address": str(row["client_ip"]), "type": "2"}
    agents = [caller]
    if client_id and identity:
        # A user acting through an OAuth application: the application is an agent of its own.
        agents.append(
            {
                "type": {"coding": [APPLICATION]},
                "who": {"identifier": {"value": client_id}, "display": client_id},
                "requestor": False,
            }
        )
    acting = _text(row["on_behalf_of"])
    if acting:
        agents.append(
            {
                "type": {"text": "actor acting for the caller (token 'act' claim)"},
                "who": {"identifier": {"value": acting}},
                "requestor": False,
            }
        )
    server: dict = {"type": {"coding": [server_type]}, "who": {"display": SERVER_NAME}, "requestor": False}
    if host:
        server["network"] = {"address": host, "type": "1"}  # 1: machine name
    agents.append(server)
    return agents


def _entities(row: Mapping, code: str) -> list[dict]:
    entities: list[dict] = []
    request_id = _text(row["request_id"])
    if request_id:
        entities.append({"what": {"identifier": {"value": request_id}}, "type": REQUEST_ID})
    for patient_id in row.get("patients") or ():
        entities.append(
            {"what": {"reference": f"Patient/{patient_id}"}, "type": PERSON, "role": PATIENT_ROLE}
        )
    for reference in targets(row):
        entities.append(
            {"what": {"reference": reference}, "type": SYSTEM_OBJECT, "role": DOMAIN_RESOURCE_ROLE}
        )
    if code.startswith("search"):
        query: dict = {"type": SYSTEM_OBJECT, "role": QUERY_ROLE}
        raw = row["query"] or ""
        # BALP: the cleaned, readable request in `description`; the raw query in `query` (base64,
        # which R4 requires non-empty: a search without parameters has only the description).
        query["description"] = _text(f"{row['http_method']} {row['path']}" + (f"?{raw}" if raw else ""))
        if raw:
            query["query"] = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        entities.append(query)
    return entities


def targets(row: Mapping) -> list[str]:
    """References of the resources the request returned or wrote, or that it aimed at when it
    returned nothing (a refused or failed read, update or delete)."""
    results = (row["results"] or "").split()
    if results:
        return [reference_of(item) for item in results]
    if row["resource_type"] and row["resource_id"]:
        target = f"{row['resource_type']}/{row['resource_id']}"
        return [f"{target}/_history/{row['version']}" if row["version"] else target]
    return []


def from_entry(entry, patients: Iterable[str] | None = None) -> dict:
    """The AuditEvent of a model instance (the console uses it); patients are read when not given."""
    from .export import COLUMNS

    row = {name: getattr(entry, "pk" if name == "id" else name) for name in COLUMNS}
    if patients is None:
        patients = entry.patients.order_by("patient_id").values_list("patient_id", flat=True)
    row["patients"] = list(patients)
    return audit_event(row)
