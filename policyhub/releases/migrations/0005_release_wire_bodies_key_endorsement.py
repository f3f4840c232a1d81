"""Releases carry their wire forms (built once, served as is); keys carry their endorsement."""

import django.db.models.deletion
from django.db import migrations, models


def fill_bodies(apps, schema_editor):
    """Releases stored before this migration get the bodies a new release would have.

    Deliberately the live `wire` module, not a frozen copy: the bodies must be what the server
    of this version serves."""
    from policyhub.releases import wire

    Release = apps.get_model("releases", "Release")
    for release in Release.objects.select_related("organization", "signing_key").iterator():
        release.etag = wire.etag(release.manifest)
        release.agent_body = wire.agent_body(
            organization=release.organization.slug,
            team_path=release.team_path,
            revision=release.revision,
            files=release.files,
            hashes=release.hashes,
            manifest=release.manifest,
            signature=release.signature,
            key_id=release.signing_key.key_id,
        )
        release.native_body = wire.native_body(
            organization=release.organization.slug,
            team_path=release.team_path,
            revision=release.revision,
            files=release.files,
        )
        release.save(update_fields=["etag", "agent_body", "native_body"])


class Migration(migrations.Migration):
    dependencies = [("releases", "0004_release_provenance_change_sets")]

    operations = [
        migrations.AddField(
            model_name="release",
            name="etag",
            field=models.CharField(default="", max_length=32),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="release",
            name="agent_body",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="release",
            name="native_body",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.RunPython(fill_bodies, migrations.RunPython.noop),
        migrations.AddField(
            model_name="signingkey",
            name="endorsed_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="releases.signingkey",
            ),
        ),
        migrations.AddField(
            model_name="signingkey",
            name="endorsement",
            field=models.CharField(blank=True, default="", max_length=128),
            preserve_default=False,
        ),
    ]
