"""A fresh database starts with the default rule set: the Admin role may do everything, nobody else
anything (authz.rules.DEFAULT_RULES), so the console shows what is in force."""

from django.db import migrations


def add_default(apps, schema_editor):
    Rule = apps.get_model("authz", "Rule")
    RuleSetVersion = apps.get_model("authz", "RuleSetVersion")
    if RuleSetVersion.objects.exists():
        return
    Rule.objects.create(
        position=1, name="admin-all", role="Admin", resources=["*"], operations=["*"], validator="Allowed"
    )
    RuleSetVersion.objects.create(version=1)


def remove_default(apps, schema_editor):
    apps.get_model("authz", "Rule").objects.filter(name="admin-all").delete()
    apps.get_model("authz", "RuleSetVersion").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("authz", "0002_rules")]
    operations = [migrations.RunPython(add_default, remove_default)]
