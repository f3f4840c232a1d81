"""PostgreSQL announces every change that alters what a device is served (see delivery/cache.py):
a device's team, revocation or credential, and a team's current release or rollout. Triggers, not
application code, so that no writer can forget. Nothing on SQLite, where nothing is cached."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION policyhub_delivery_device_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('policyhub_delivery', 'device:' || OLD.credential_hash);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('policyhub_delivery', 'device:' || NEW.credential_hash);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER policyhub_delivery_device
AFTER INSERT OR UPDATE OF team_id, revoked_at, credential_hash, organization_id
OR DELETE ON fleet_device
FOR EACH ROW EXECUTE FUNCTION policyhub_delivery_device_changed();

CREATE FUNCTION policyhub_delivery_release_changed() RETURNS trigger AS $$
DECLARE
    changed releases_release%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify(
        'policyhub_delivery', 'team:' || changed.organization_id || ':' || changed.team_path
    );
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER policyhub_delivery_release
AFTER INSERT
OR UPDATE OF current, rollout_percent, aborted_at, previous_id, etag, agent_body, native_body,
    team_path, organization_id
OR DELETE ON releases_release
FOR EACH ROW EXECUTE FUNCTION policyhub_delivery_release_changed();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS policyhub_delivery_release ON releases_release;
DROP FUNCTION IF EXISTS policyhub_delivery_release_changed();
DROP TRIGGER IF EXISTS policyhub_delivery_device ON fleet_device;
DROP FUNCTION IF EXISTS policyhub_delivery_device_changed();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0001_initial"),
        ("releases", "0005_release_wire_bodies_key_endorsement"),
    ]

    operations = [migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD))]
