"""FHIR GraphQL (https://hl7.org/fhir/R4/graphql.html): a transport over the door, like REST.

schema.py generates the schema from the R4 definitions, resolvers.py answers its fields through
interactions/graphql.py, execute.py runs one request as one interaction, views.py is the `$graphql`
endpoint, errors.py the error entries.
"""
