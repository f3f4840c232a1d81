"""Announce a device's fetch credential as well as its credential: the native channel accepts
both, so the index lists the device under each (fleet migration 0005 adds the column)."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION policyhub_delivery_device_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('policyhub_delivery', 'device:' || OLD.credential_hash);
        IF OLD.fetch_credential_hash IS NOT NULL THEN
            PERFORM pg_notify('policyhub_delivery', 'device:' || OLD.fetch_credential_hash);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('policyhub_delivery', 'device:' || NEW.credential_hash);
        IF NEW.fetch_credential_hash IS NOT NULL THEN
            PERFORM pg_notify('policyhub_delivery', 'device:' || NEW.fetch_credential_hash);
        END IF;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP TRIGGER policyhub_delivery_device ON fleet_device;
CREATE TRIGGER policyhub_delivery_device
AFTER INSERT
OR UPDATE OF team_id, revoked_at, credential_hash, fetch_credential_hash, organization_id
OR DELETE ON fleet_device
FOR EACH ROW EXECUTE FUNCTION policyhub_delivery_device_changed();
"""

BACKWARD = """
CREATE OR REPLACE FUNCTION policyhub_delivery_device_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('policyhub_delivery', 'device:' || OLD.credential_hash);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('policyhub_delivery', 'device:' || NEW.credential_hash);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP TRIGGER policyhub_delivery_device ON fleet_device;
CREATE TRIGGER policyhub_delivery_device
AFTER INSERT OR UPDATE OF team_id, revoked_at, credential_hash, organization_id
OR DELETE ON fleet_device
FOR EACH ROW EXECUTE FUNCTION policyhub_delivery_device_changed();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0001_change_notifications"),
        ("fleet", "0005_device_fetch_credential_hash"),
    ]

    operations = [migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD))]
