from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "policyhub.fleet"

    def ready(self) -> None:
        # Imported here, as Django requires: models are not loaded when this module is.
        from django.db.backends.signals import connection_created

        from policyhub.fleet.attachment import FleetOnTeams
        from policyhub.fleet.models import sqlite_functions_register
        from policyhub.teams.attachments import team_attachment_register

        team_attachment_register(FleetOnTeams())
        # Before any connection opens (ready() runs before the first query).
        connection_created.connect(sqlite_functions_register, dispatch_uid="fleet-sqlite")
