from django.contrib import admin

from policyhub.changes.models import ChangeSet


@admin.register(ChangeSet)
class ChangeSetAdmin(admin.ModelAdmin[ChangeSet]):
    """Read-only: change sets move only through the services, which audit every step."""

    list_display = ["id", "organization", "title", "status", "author", "created_at", "publish_at"]
    list_filter = ["status", "organization"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
