"""`Subscription/[id]/$status` in the shape the Subscriptions R5 Backport IG gives it for R4
(http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status):
a `searchset` Bundle whose entry is a Parameters resource (profile backport-subscription-status-r4)
with the subscription, its status, the type `query-status`, the events since it started and, when
it has one, the last error.
"""

from __future__ import annotations

import uuid

from resources import fhirjson
from resources.services import Stored

from .models import Delivery, SubscriptionState

PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"


def bundle(stored: Stored) -> dict:
    state = SubscriptionState.objects.filter(resource_pk=stored.pk).first()
    resource = fhirjson.loads(stored.body)
    parameters = [
        {"name": "subscription", "valueReference": {"reference": f"Subscription/{stored.fhir_id}"}},
        {"name": "status", "valueCode": resource.get("status", "active")},
        {"name": "type", "valueCode": "query-status"},
        {
            "name": "events-since-subscription-start",
            "valueString": str(state.events_since_start if state else 0),
        },
    ]
    error = (state.error if state else "") or resource.get("error", "")
    if not error and state is not None:
        last = Delivery.objects.filter(subscription=state, state=Delivery.DEAD).order_by("-number").first()
        error = last.last_error if last else ""
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": 1,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Parameters",
                    "meta": {"profile": [PROFILE]},
                    "parameter": parameters,
                },
                "search": {"mode": "match"},
            }
        ],
    }
