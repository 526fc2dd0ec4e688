"""Every API token expires (authz/tokens.py). Tokens minted before that with no expiry (`lifetime: 0`,
or the old default for durable tokens) get one: FHIR_TOKEN_MAX_LIFETIME from the upgrade, so that
nothing breaks on the day and nothing lives forever. Revoked and used tokens are left as they are."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone


def give_expiry(apps, schema_editor):
    ApiToken = apps.get_model("authz", "ApiToken")
    expires = timezone.now() + timedelta(seconds=settings.FHIR_TOKEN_MAX_LIFETIME)
    ApiToken.objects.filter(expires__isnull=True, revoked__isnull=True).update(expires=expires)


class Migration(migrations.Migration):
    dependencies = [("authz", "0005_default_rule_names_non_data_operations")]
    # Not reversible in meaning (which tokens had none is not kept); going back leaves the dates.
    operations = [migrations.RunPython(give_expiry, migrations.RunPython.noop)]
