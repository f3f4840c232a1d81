"""Release receipts (what each device fetched and applied of each release) and the history of
devices' status reports. Both start empty: they record from this migration on."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_organization_policy_digest_kept"),
        ("fleet", "0002_device_codex_sort_key"),
        ("releases", "0008_publishrun_requested_by_kind_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeviceReceipt",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("first_fetched_at", models.DateTimeField(blank=True, null=True)),
                (
                    "first_channel",
                    models.CharField(
                        blank=True,
                        choices=[("native", "Native"), ("agent", "Agent")],
                        max_length=16,
                    ),
                ),
                ("last_fetched_at", models.DateTimeField(blank=True, null=True)),
                ("applied_at", models.DateTimeField(blank=True, null=True)),
                ("reported_at", models.DateTimeField(blank=True, null=True)),
                ("errors", models.JSONField(blank=True, default=list)),
                (
                    "device",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="receipts",
                        to="fleet.device",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.organization",
                    ),
                ),
                (
                    "release",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="releases.release",
                    ),
                ),
            ],
            options={
                "ordering": ["-id"],
                "indexes": [
                    models.Index(fields=["release", "-id"], name="device_receipt_release"),
                    models.Index(fields=["organization", "id"], name="device_receipt_organization"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("device", "release"), name="device_receipt_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("first_channel__in", ["", "native", "agent"])),
                        name="device_receipt_channel_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("first_fetched_at__isnull", True),
                                ("last_fetched_at__isnull", True),
                            ),
                            ("first_fetched_at__lte", models.F("last_fetched_at")),
                            _connector="OR",
                        ),
                        name="device_receipt_fetch_times_ordered",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="DeviceReport",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("reported_at", models.DateTimeField()),
                ("applied_revision", models.PositiveIntegerField(blank=True, null=True)),
                ("codex_version", models.CharField(blank=True, max_length=64)),
                ("os", models.CharField(blank=True, max_length=128)),
                ("agent_version", models.CharField(blank=True, max_length=64)),
                ("errors", models.JSONField(blank=True, default=list)),
                (
                    "device",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="reports",
                        to="fleet.device",
                    ),
                ),
            ],
            options={
                "ordering": ["-reported_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["device", "-reported_at", "-id"], name="device_report_newest"
                    )
                ],
            },
        ),
    ]
