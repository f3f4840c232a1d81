from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "policyhub.releases"

    def ready(self) -> None:
        # Registers the deployment checks of release signing (`manage.py check --deploy`).
        from policyhub.releases import checks  # noqa: F401
