"""FHIR URL patterns under the base (https://hl7.org/fhir/R4/http.html#general)."""

from django.urls import path, re_path

from . import routes

_TYPE = r"(?P<resource_type>[A-Z][A-Za-z]+)"
_ID = r"(?P<fhir_id>[^/]+)"

# A compartment member type: a resource type, or `*` for every type in the compartment.
_MEMBER = r"(?P<member_type>[A-Z][A-Za-z]+|\*)"

# Order matters: `_search`, `_history` and `$everything` must win over the `[id]` and member-type
# patterns that would otherwise swallow them.
urlpatterns = [
    path("metadata", routes.metadata),
    path("_history", routes.system_history),
    re_path(r"^_search/?$", routes.system_search),
    re_path(rf"^{_TYPE}/?$", routes.type_level),
    re_path(rf"^{_TYPE}/_search/?$", routes.type_search),
    re_path(rf"^{_TYPE}/_history/?$", routes.type_history),
    re_path(rf"^{_TYPE}/\$everything/?$", routes.type_everything),
    re_path(rf"^{_TYPE}/{_ID}/\$everything/?$", routes.instance_everything),
    re_path(rf"^{_TYPE}/{_ID}/\$status/?$", routes.instance_status),
    re_path(rf"^{_TYPE}/{_ID}/\$materialize/?$", routes.instance_materialize),
    re_path(rf"^{_TYPE}/{_ID}/_history/?$", routes.instance_history),
    re_path(rf"^{_TYPE}/{_ID}/_history/(?P<version_id>[^/]+)/?$", routes.version),
    re_path(rf"^{_TYPE}/{_ID}/{_MEMBER}/?$", routes.compartment),
    re_path(rf"^{_TYPE}/{_ID}/{_MEMBER}/_search/?$", routes.compartment, {"post": True}),
    re_path(rf"^{_TYPE}/{_ID}/?$", routes.instance),
    re_path(r"^(?P<rest>.*)$", routes.unknown),
]
