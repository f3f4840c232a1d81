from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "policyhub.audit"

    def ready(self) -> None:
        from celery.signals import task_postrun, task_prerun

        from policyhub.audit.context import task_finished, task_started

        task_prerun.connect(task_started, weak=False)
        task_postrun.connect(task_finished, weak=False)
