from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policyhub.policies"
