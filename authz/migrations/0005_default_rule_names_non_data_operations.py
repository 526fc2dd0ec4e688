"""`operation: "*"` now stands for the data operations only (authz.rules.DATA_OPERATIONS);
`generate-token` and `materialize` must be named. The default `admin-all` rule (as migration 0003
stored it, or as loaded from the README's example) keeps what it granted by naming them. Any other
rule that relied on `*` for them loses them: that is the point of the change (docs/rules.md)."""

from django.db import migrations

NAMED = ["*", "generate-token", "materialize"]


def name_operations(apps, schema_editor):
    Rule = apps.get_model("authz", "Rule")
    RuleSetVersion = apps.get_model("authz", "RuleSetVersion")
    changed = 0
    for rule in Rule.objects.filter(name="admin-all", role="Admin", validator="Allowed"):
        if rule.resources == ["*"] and rule.operations == ["*"]:
            rule.operations = NAMED
            rule.save(update_fields=["operations"])
            changed += 1
    if changed:
        # Running processes reload the rule set when its version moves.
        for version in RuleSetVersion.objects.all():
            version.version += 1
            version.save(update_fields=["version"])


def unname_operations(apps, schema_editor):
    Rule = apps.get_model("authz", "Rule")
    for rule in Rule.objects.filter(name="admin-all", role="Admin", validator="Allowed"):
        if rule.operations == NAMED:
            rule.operations = ["*"]
            rule.save(update_fields=["operations"])


class Migration(migrations.Migration):
    dependencies = [("authz", "0004_token_identity_parts")]
    operations = [migrations.RunPython(name_operations, unname_operations)]
