from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "policyhub.teams"
