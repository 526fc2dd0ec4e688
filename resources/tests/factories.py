"""factory-boy factories that build valid FHIR R4 JSON bodies (dicts) for the resources tests."""

import factory


class PatientFactory(factory.DictFactory):
    resourceType = "Patient"
    identifier = factory.Sequence(lambda n: [{"system": "http://example.org/mrn", "value": f"MRN-{n}"}])
    name = factory.LazyFunction(lambda: [{"family": "Doe", "given": ["Jane"]}])
    gender = "female"
    birthDate = "1980-02-29"


class OrganizationFactory(factory.DictFactory):
    resourceType = "Organization"
    name = factory.Sequence(lambda n: f"Clinic {n}")
    active = True


class ObservationFactory(factory.DictFactory):
    resourceType = "Observation"
    status = "final"
    code = factory.LazyFunction(
        lambda: {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]}
    )
    subject = factory.LazyFunction(lambda: {"reference": "Patient/example"})
    effectiveDateTime = "2024-05-01T10:00:00Z"
    valueQuantity = factory.LazyFunction(
        lambda: {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    )
