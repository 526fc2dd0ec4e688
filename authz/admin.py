"""Console pages for API tokens, identity links, trusted issuers and OAuth client roles.

A token's secret is shown once, on the page that answers its creation, and is kept nowhere else
(not in the session, not in a message cookie).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from interactions import console

from . import issuers
from .context import AccessContext
from .models import ApiToken, ClientRole, IdentityLink, TrustedIssuer


class ApiTokenForm(forms.ModelForm):
    ttl = forms.IntegerField(
        label="Lifetime (seconds)",
        required=False,
        min_value=1,
        help_text="Empty: the configured default. Every token expires (at most FHIR_TOKEN_MAX_LIFETIME).",
    )

    class Meta:
        model = ApiToken
        fields = ["role", "identity", "kind", "label"]

    def clean_ttl(self):
        ttl = self.cleaned_data.get("ttl")
        limit = settings.FHIR_TOKEN_MAX_LIFETIME
        if ttl is not None and ttl > limit:
            raise forms.ValidationError(f"At most {limit} seconds (FHIR_TOKEN_MAX_LIFETIME)")
        return ttl

    def clean(self):
        data = super().clean()
        identity = data.get("identity")
        if identity:
            from .identity import identity_alive

            if not identity_alive(identity):
                self.add_error("identity", f"{identity} does not exist")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["hint", "kind", "role", "identity", "label", "created", "expires", "revoked", "used"]
    list_filter = ["kind", "role", ("revoked", admin.EmptyFieldListFilter)]
    search_fields = ["hint", "identity", "label", "role"]
    actions = ["revoke"]
    readonly_fields = [
        "hint",
        "kind",
        "role",
        "identity",
        "created",
        "created_by",
        "expires",
        "revoked",
        "used",
        "exchanged_from",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenForm
            kwargs["fields"] = ["role", "identity", "kind", "ttl", "label"]
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["role", "identity", "kind", "ttl", "label"]
        return [*self.readonly_fields, "label"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, never deleted: the audit log refers to token ids

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        minted = console.issue_token(
            _operator(request, "mint API token"),
            role=form.cleaned_data["role"],
            identity=form.cleaned_data.get("identity") or "",
            kind=form.cleaned_data["kind"],
            ttl=form.cleaned_data.get("ttl"),
            label=form.cleaned_data.get("label") or "",
        )
        obj.pk = minted.token.pk
        request._minted_secret = minted.secret

    def response_add(self, request, obj, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "token": ApiToken.objects.get(pk=obj.pk),
            "secret": request._minted_secret,
            "title": "API token created",
        }
        response = TemplateResponse(request, "admin/authz/apitoken/minted.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        live = list(queryset.filter(revoked__isnull=True).values_list("pk", flat=True))
        for pk in live:
            console.revoke_token(_operator(request, "revoke API token"), token=str(pk))
        self.message_user(request, f"Revoked {len(live)} token(s).", messages.SUCCESS)


def _operator(request, action: str) -> AccessContext:
    """The console user as the operator of an action that goes through the interaction layer."""
    return console.operator(
        request.user.get_username(),
        transport=console.CONSOLE,
        action=action,
        client_ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", ""),
    )


@admin.register(IdentityLink)
class IdentityLinkAdmin(admin.ModelAdmin):
    list_display = ["issuer", "subject", "reference", "role", "created"]
    list_filter = ["issuer", "role"]
    search_fields = ["subject", "reference"]


@admin.register(TrustedIssuer)
class TrustedIssuerAdmin(admin.ModelAdmin):
    list_display = ["issuer", "audience", "enabled", "default_role", "auto_create"]
    list_filter = ["enabled"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        issuers.clear_cache()


@admin.register(ClientRole)
class ClientRoleAdmin(admin.ModelAdmin):
    list_display = ["application", "role", "identity"]
    search_fields = ["role", "identity"]
