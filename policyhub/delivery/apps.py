from django.apps import AppConfig
from django.db.models.signals import post_save


class DeliveryConfig(AppConfig):
    name = "policyhub.delivery"

    def ready(self) -> None:
        # Imported here, as Django requires: models are not loaded when this module is.
        from policyhub.delivery.receivers import device_saved
        from policyhub.fleet.models import Device

        post_save.connect(device_saved, sender=Device, dispatch_uid="delivery-device-saved")
