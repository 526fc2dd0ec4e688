"""The generated schema (resources/graphql/schema.py) and the `graphql_schema` command."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from graphql import GraphQLInterfaceType, GraphQLList, GraphQLObjectType, GraphQLScalarType

from resources import definitions
from resources.graphql.schema import instance_schema, schema


@pytest.fixture(scope="module")
def gql():
    return schema().graphql_schema


def test_built_once_and_shared():
    assert schema() is schema()
    assert instance_schema("Patient").get_type("Observation") is schema().graphql_schema.get_type(
        "Observation"
    )


def test_every_resource_type_has_by_id_and_list_fields(gql):
    query = gql.query_type
    for resource_type in definitions.resource_types():
        assert isinstance(gql.get_type(resource_type), GraphQLObjectType), resource_type
        assert query.fields[resource_type].args["id"].type.of_type.name == "ID"
        listed = query.fields[f"{resource_type}List"]
        assert isinstance(listed.type, GraphQLList)
        assert {"_count", "_offset", "_sort", "_id"} <= set(listed.args)
    assert "address_postalcode" in query.fields["PatientList"].args


def test_types_follow_the_json_representation(gql):
    patient = gql.get_type("Patient")
    assert gql.get_type("Resource") in patient.interfaces
    assert isinstance(gql.get_type("Resource"), GraphQLInterfaceType)
    fields = patient.fields
    assert (
        fields["deceasedBoolean"].type.name == "Boolean"
        and fields["deceasedDateTime"].type.name == "dateTime"
    )
    assert fields["_birthDate"].type.name == "Element"
    assert fields["contact"].type.of_type.name == "PatientContact"
    assert fields["contained"].type.of_type.name == "Resource"
    assert set(fields["extension"].args) == {"url"}
    assert isinstance(gql.get_type("decimal"), GraphQLScalarType)
    assert gql.get_type("Quantity").fields["value"].type.name == "decimal"
    assert set(gql.get_type("Reference").fields["resource"].args) == {"optional", "type"}
    assert "class" in gql.get_type("Encounter").fields  # a Python keyword, under its FHIR name
    assert "valueQuantity" in gql.get_type("Observation").fields
    assert gql.get_type("QuestionnaireItem").fields["item"].type.of_type.name == "QuestionnaireItem"


def test_command_prints_sdl():
    out = io.StringIO()
    call_command("graphql_schema", stdout=out)
    text = out.getvalue()
    assert "type Patient implements Resource {" in text
    assert "PatientList(" in text
    out = io.StringIO()
    call_command("graphql_schema", "--type", "Observation", stdout=out)
    assert "query: Observation" in out.getvalue()
    with pytest.raises(CommandError) as refused:
        call_command("graphql_schema", "--type", "Spaceship")
    assert refused.value.returncode == 2
