"""The audit trail becomes a hash chain per organisation and append-only in the database.

Existing events are linked in id order (which is their time order), then the columns become
required, and triggers refuse UPDATE, DELETE and TRUNCATE on the events (and DELETE and TRUNCATE
on the chain heads, whose loss would restart a chain). On SQLite, which `make run` uses, the same
refusal for UPDATE and DELETE. Triggers go last: SQLite rebuilds a table to alter a column,
dropping its triggers, so a later migration that alters `audit_auditevent` must install them again
(AUDIT_GUARD below, copied into it, since migrations do not import each other's code).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from policyhub.audit.chain import FIELDS, GENESIS, event_hash

AUDIT_GUARD = {
    "postgresql": [
        """
        CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """,
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent"
        " FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_chain_kept BEFORE DELETE ON audit_auditchain"
        " FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_auditchain"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
    ],
    "sqlite": [
        "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_auditevent"
        " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: UPDATE refused'); END",
        "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent"
        " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE refused'); END",
        "CREATE TRIGGER audit_chain_kept BEFORE DELETE ON audit_auditchain"
        " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE refused'); END",
    ],
}
AUDIT_UNGUARD = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
        "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent",
        "DROP TRIGGER IF EXISTS audit_chain_kept ON audit_auditchain",
        "DROP TRIGGER IF EXISTS audit_chain_no_truncate ON audit_auditchain",
        "DROP FUNCTION IF EXISTS audit_append_only()",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_event_no_update",
        "DROP TRIGGER IF EXISTS audit_event_no_delete",
        "DROP TRIGGER IF EXISTS audit_chain_kept",
    ],
}


def _run(statements):
    def run(apps, schema_editor):
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return run


def link_existing(apps, schema_editor):
    """Chain the events written before chains, per organisation in id order."""
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChain = apps.get_model("audit", "AuditChain")
    organizations = (
        AuditEvent.objects.order_by().values_list("organization_id", flat=True).distinct()
    )
    for organization_id in list(organizations):
        head, length, batch = GENESIS, 0, []
        events = AuditEvent.objects.filter(organization_id=organization_id).order_by("id")
        for event in events.iterator(chunk_size=2000):
            length += 1
            event.seq, event.prev_hash = length, head
            event.hash = head = event_hash(
                organization_id, head, {name: getattr(event, name) for name in FIELDS}
            )
            batch.append(event)
            if len(batch) == 2000:
                AuditEvent.objects.bulk_update(batch, ["seq", "prev_hash", "hash"])
                batch = []
        AuditEvent.objects.bulk_update(batch, ["seq", "prev_hash", "hash"])
        if organization_id is not None:
            AuditChain.objects.create(organization_id=organization_id, length=length, head=head)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_organization_policy_digest_kept"),
        ("audit", "0006_audit_object_history_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditChain",
            fields=[
                (
                    "organization",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="accounts.organization",
                    ),
                ),
                ("length", models.PositiveBigIntegerField(default=0)),
                ("head", models.CharField(max_length=64)),
            ],
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="source_address",
            field=models.GenericIPAddressField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="request_id",
            field=models.CharField(blank=True, default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(link_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False),
        ),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(
                fields=("organization", "seq"), name="audit_org_seq"
            ),
        ),
        migrations.RunPython(_run(AUDIT_GUARD), _run(AUDIT_UNGUARD)),
    ]
