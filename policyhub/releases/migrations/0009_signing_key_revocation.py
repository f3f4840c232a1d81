"""Signing keys can be revoked (when, why, and the key's own signature over its revocation), and
each organisation keeps the signed list of its revoked keys that machines are served."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_organization_policy_digest_kept"),
        ("releases", "0008_publishrun_requested_by_kind_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="RevocationList",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("statement", models.TextField()),
                ("signature", models.CharField(max_length=128)),
                ("issued_at", models.DateTimeField()),
            ],
        ),
        migrations.RemoveConstraint(
            model_name="signingkey",
            name="signing_key_status_valid",
        ),
        migrations.AddField(
            model_name="signingkey",
            name="revocation_reason",
            field=models.TextField(blank=True, max_length=2000),
        ),
        migrations.AddField(
            model_name="signingkey",
            name="revoked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="signingkey",
            name="self_revocation",
            field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AlterField(
            model_name="signingkey",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("retired", "Retired"), ("revoked", "Revoked")],
                default="active",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="signingkey",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["active", "retired", "revoked"])),
                name="signing_key_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="signingkey",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("revoked_at__isnull", False), ("status", "revoked")),
                    models.Q(
                        models.Q(("status", "revoked"), _negated=True), ("revoked_at__isnull", True)
                    ),
                    _connector="OR",
                ),
                name="signing_key_revoked_at_iff_revoked",
            ),
        ),
        migrations.AddField(
            model_name="revocationlist",
            name="organization",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="revocation_list",
                to="accounts.organization",
            ),
        ),
        migrations.AddField(
            model_name="revocationlist",
            name="signing_key",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="releases.signingkey",
            ),
        ),
    ]
