"""Storage of FHIR resources: current state, every version, and the search index tables.

Bodies are stored as the canonical JSON text the server produced at write time, with `meta.versionId`
and `meta.lastUpdated` already in it, so that reads stream the stored text without re-serialising.
Index tables follow https://hl7.org/fhir/R4/search.html#ptypes: one table per search-parameter type,
rows for the current version only, rewritten in the same transaction as the write.
"""

from django.db import models

from authz.querysets import ContentManager, ResourceManager


class BodyField(models.TextField):
    """Canonical JSON text of a resource.

    It declares a placeholder so that Django's PostgreSQL bulk insert takes the multi-row VALUES
    form rather than UNNEST over arrays: psycopg quotes text arrays element by element in Python,
    which costs a third of a transaction's time when the elements are whole resource bodies.
    """

    def get_placeholder(self, value, compiler, connection) -> str:
        return "%s"


class Resource(models.Model):
    """The current state of one logical resource (one row per resource_type + fhir_id)."""

    resource_type = models.CharField(max_length=64)
    fhir_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    last_updated = models.DateTimeField()
    deleted = models.BooleanField(default=False)
    # Canonical JSON of the current version; empty once deleted (history keeps the bodies).
    body = BodyField(blank=True, default="")

    # Fails closed: every query must be .restrict(ctx, operation)-ed or .system(reason)-ed first.
    # Django's own plumbing (saves, related lookups) goes through the plain base manager.
    objects = ResourceManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource_type", "fhir_id"], name="resource_type_id_unique")
        ]
        indexes = [models.Index(fields=["resource_type", "last_updated"], name="resource_type_updated")]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.fhir_id}/_history/{self.version}"


class ResourceVersion(models.Model):
    """Every version ever written; a delete is a version without a body. Serves vread and _history."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="versions")
    resource_type = models.CharField(max_length=64)
    fhir_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    last_updated = models.DateTimeField()
    method = models.CharField(max_length=8)  # POST, PUT, PATCH or DELETE
    body = BodyField(null=True)

    objects = ContentManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource", "version"], name="resource_version_unique")
        ]
        indexes = [
            models.Index(fields=["last_updated"], name="version_updated"),
            models.Index(fields=["resource_type", "last_updated"], name="version_type_updated"),
        ]


# On PostgreSQL a plain btree on varchar cannot serve `LIKE 'abc%'` unless the database collation is
# C; the pattern operator class can, and still serves equality. Other databases ignore opclasses.
_PATTERN = "varchar_pattern_ops"


class IndexRow(models.Model):
    """Columns shared by every index table: which resource, its type, which search parameter."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="+")
    resource_type = models.CharField(max_length=64)
    param = models.CharField(max_length=100)

    objects = ContentManager()

    class Meta:
        abstract = True


class TokenIndex(IndexRow):
    """token: system|code pairs (Coding, Identifier, ContactPoint, code, boolean); `text` for :text.

    For an Identifier, `type_system`/`type_code` hold one coding of Identifier.type (for `:of-type`);
    an identifier with several type codings has one row per coding. NULL for every other value.
    """

    system = models.CharField(max_length=255, null=True)
    code = models.CharField(max_length=255, null=True)
    text = models.CharField(max_length=255, null=True)
    type_system = models.CharField(max_length=255, null=True)
    type_code = models.CharField(max_length=255, null=True)

    class Meta:
        indexes = [
            models.Index(fields=["resource_type", "param", "code", "system"], name="token_lookup"),
            models.Index(
                fields=["resource_type", "param", "text"], name="token_text", opclasses=["", "", _PATTERN]
            ),
        ]


class StringIndex(IndexRow):
    """string: `value` normalised (case and accents folded, whitespace collapsed), `exact` as written."""

    value = models.CharField(max_length=255)
    exact = models.CharField(max_length=255)

    class Meta:
        indexes = [
            models.Index(
                fields=["resource_type", "param", "value"], name="string_lookup", opclasses=["", "", _PATTERN]
            ),
            models.Index(fields=["resource_type", "param", "exact"], name="string_exact"),
        ]


class DateIndex(IndexRow):
    """date: the instant range [low, high] a date, dateTime, instant, Period or Timing covers."""

    low = models.DateTimeField(null=True)
    high = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["resource_type", "param", "low", "high"], name="date_lookup"),
            models.Index(fields=["resource_type", "param", "high"], name="date_high"),
        ]


class NumberIndex(IndexRow):
    value = models.DecimalField(max_digits=38, decimal_places=18)

    class Meta:
        indexes = [models.Index(fields=["resource_type", "param", "value"], name="number_lookup")]


class QuantityIndex(IndexRow):
    value = models.DecimalField(max_digits=38, decimal_places=18, null=True)
    system = models.CharField(max_length=255, null=True)
    code = models.CharField(max_length=255, null=True)
    unit = models.CharField(max_length=255, null=True)

    class Meta:
        indexes = [models.Index(fields=["resource_type", "param", "code", "value"], name="quantity_lookup")]


class ReferenceIndex(IndexRow):
    """reference: a local target as type + id, or an absolute / canonical URL (with its version)."""

    target_type = models.CharField(max_length=64, null=True)
    target_id = models.CharField(max_length=64, null=True)
    url = models.CharField(max_length=512, null=True)
    url_version = models.CharField(max_length=64, null=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["target_type", "target_id", "param", "resource_type"], name="reference_target"
            ),
            models.Index(fields=["resource_type", "param", "url"], name="reference_url"),
        ]


class UriIndex(IndexRow):
    value = models.CharField(max_length=512)

    class Meta:
        indexes = [
            models.Index(
                fields=["resource_type", "param", "value"], name="uri_lookup", opclasses=["", "", _PATTERN]
            )
        ]


class CompositeIndex(IndexRow):
    """composite (https://hl7.org/fhir/R4/search.html#composite): one row per combination of component
    values taken from the same element (e.g. one Observation.component's code and value).

    R4 composites are token+token, token+quantity, token+date, token+string, reference+token and
    token+number+number. Component 1 is a token (system, code) or, for reference+token, the target
    `Type/id` in `c1_code` with `c1_system` NULL. Component 2 fills the columns of its type; a third
    (number) component goes to `c3_number`.
    """

    c1_system = models.CharField(max_length=255, null=True)
    c1_code = models.CharField(max_length=255, null=True)
    c2_system = models.CharField(max_length=255, null=True)
    c2_code = models.CharField(max_length=255, null=True)
    c2_number = models.DecimalField(max_digits=38, decimal_places=18, null=True)
    c2_low = models.DateTimeField(null=True)
    c2_high = models.DateTimeField(null=True)
    c2_string = models.CharField(max_length=255, null=True)
    c3_number = models.DecimalField(max_digits=38, decimal_places=18, null=True)

    class Meta:
        indexes = [models.Index(fields=["resource_type", "param", "c1_code"], name="composite_lookup")]


class CompartmentMembership(models.Model):
    """One row per compartment (https://hl7.org/fhir/R4/compartmentdefinition.html) a resource is in."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="+")
    resource_type = models.CharField(max_length=64)
    compartment_type = models.CharField(max_length=32)
    compartment_id = models.CharField(max_length=64)

    objects = ContentManager()

    class Meta:
        indexes = [
            models.Index(
                fields=["compartment_type", "compartment_id", "resource_type"], name="compartment_lookup"
            ),
        ]
