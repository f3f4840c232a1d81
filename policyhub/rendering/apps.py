from django.apps import AppConfig


class RenderingConfig(AppConfig):
    name = "policyhub.rendering"
