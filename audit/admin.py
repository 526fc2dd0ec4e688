"""Console pages for the audit log: browse, filter and search, never change.

The log is append-only (models.py), so the console grants no add, change or delete permission to
anyone, superusers included; a row's page shows its columns, the patients it touched, and the row as
the R4 AuditEvent that `GET [base]/AuditEvent/[id]` serves (https://hl7.org/fhir/R4/auditevent.html,
shaped after IHE BALP, https://profiles.ihe.net/ITI/BALP/).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.utils.html import format_html

from adminui.readonly import ReadOnly
from resources import fhirjson

from . import fhir
from .export import patient_condition
from .models import AuditAnchor, AuditCheckpoint, AuditEntry, AuditPatient


class AuditPatientInline(ReadOnly, admin.TabularInline):
    model = AuditPatient
    fields = ["patient_id"]
    readonly_fields = ["patient_id"]
    extra = 0
    can_delete = False
    verbose_name = "patient touched"
    verbose_name_plural = "patients touched"


class PatientFilter(admin.SimpleListFilter):
    """Who accessed this patient: `?patient=<id>` on the change list. The patients are too many to
    list as choices, so the filter is reached by URL, or through the search box: `Patient/<id>`."""

    title = "patient"
    parameter_name = "patient"

    def lookups(self, request, model_admin):
        value = request.GET.get(self.parameter_name)
        return [(value, f"Patient/{value}")] if value else []

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(patient_condition(value.removeprefix("Patient/")))


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["time", "caller", "operation", "resource", "outcome", "status", "rule", "rules_version"]
    list_filter = ["outcome", "operation", "role", PatientFilter]
    search_fields = ["identity", "=request_id", "=resource_id"]
    date_hierarchy = "time"
    ordering = ["-time", "-id"]
    inlines = [AuditPatientInline]
    list_per_page = 100
    # Counting a log of millions of rows for every page would cost more than the page.
    show_full_result_count = False
    fieldsets = [
        ("When and who", {"fields": ["time", "request_id", "role", "identity", "user", "client_id"]}),
        (
            "Credential",
            {"fields": ["credential", "auth_method", "on_behalf_of", "client_ip", "user_agent"]},
        ),
        (
            "Request",
            {
                "fields": [
                    "http_method",
                    "path",
                    "query",
                    "operation",
                    "resource_type",
                    "resource_id",
                    "version",
                ]
            },
        ),
        (
            "Outcome",
            {"fields": ["outcome", "status", "reason", "rule", "rules_version", "filters", "results"]},
        ),
        ("Chain", {"classes": ["collapse"], "fields": ["chain", "seq", "prev_hash", "hash"]}),
        ("As an AuditEvent", {"classes": ["collapse"], "fields": ["audit_event"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in AuditEntry._meta.concrete_fields] + ["audit_event"]

    def get_search_results(self, request, queryset, search_term):
        # "Patient/<id>" in the search box: who accessed that patient, and what the patient did.
        term = search_term.strip()
        if term.startswith("Patient/") and fhirjson.is_valid_id(term[len("Patient/") :]):
            return queryset.filter(patient_condition(term[len("Patient/") :]) | Q(identity=term)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="caller", ordering="identity")
    def caller(self, obj: AuditEntry) -> str:
        who = obj.identity or obj.user or obj.client_id or "-"
        return f"{who} ({obj.role})" if obj.role else who

    @admin.display(description="resource")
    def resource(self, obj: AuditEntry) -> str:
        if obj.resource_type and obj.resource_id:
            return f"{obj.resource_type}/{obj.resource_id}" + (
                f"/_history/{obj.version}" if obj.version else ""
            )
        return obj.resource_type or "-"

    @admin.display(description="AuditEvent")
    def audit_event(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", fhirjson.dumps_pretty(fhir.from_entry(obj)))


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnly, admin.ModelAdmin):
    """Chain heads as anchored: `audit_verify` requires each chain to reach its newest one."""

    list_display = ["chain", "seq", "time", "source", "hash"]
    search_fields = ["=chain"]
    ordering = ["-time", "-id"]
    show_full_result_count = False


@admin.register(AuditAnchor)
class AuditAnchorAdmin(ReadOnly, admin.ModelAdmin):
    """Where each chain continues after `audit_archive` moved its older rows to a file."""

    list_display = ["chain", "seq", "archive", "created"]
    search_fields = ["=chain", "archive"]
    ordering = ["-created", "-id"]
