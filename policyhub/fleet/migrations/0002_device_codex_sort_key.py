"""Device.codex_sort_key, filled for the devices already enrolled, and the index fleet lists
read in order."""

from typing import Any

from django.db import migrations, models

from policyhub.fleet.models import codex_sort_key


def fill_sort_keys(apps: Any, schema_editor: Any) -> None:
    """One UPDATE per distinct reported version: a fleet runs a few dozen of them."""
    device = apps.get_model("fleet", "Device")
    reported = device.objects.values_list("codex_version", flat=True).distinct().order_by()
    for version in list(reported):
        key = codex_sort_key(version)
        if key:
            device.objects.filter(codex_version=version).update(codex_sort_key=key)


class Migration(migrations.Migration):
    dependencies = [("fleet", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="device",
            name="codex_sort_key",
            field=models.CharField(blank=True, editable=False, max_length=20),
        ),
        migrations.RunPython(fill_sort_keys, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="device",
            index=models.Index(
                condition=models.Q(("revoked_at__isnull", True)),
                fields=["organization", "-enrolled_at"],
                name="device_enrolled_newest",
            ),
        ),
    ]
