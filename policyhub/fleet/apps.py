from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "policyhub.fleet"

    def ready(self) -> None:
        # Imported here, as Django requires: models are not loaded when this module is.
        from policyhub.fleet.attachment import FleetOnTeams
        from policyhub.teams.attachments import team_attachment_register

        team_attachment_register(FleetOnTeams())
