"""URL routes: sign-in (django-allauth), the admin site behind it, invitations, the device and
admin APIs, and the pages."""

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from policyhub.accounts import views as account_views

# The admin uses the same sign-in, and so the same MFA and rate limits, as everything else.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "PolicyHub administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("invitations/<str:secret>/", account_views.invitation, name="invitation"),
    path("", include("policyhub.delivery.urls")),
    path("", include("policyhub.fleet.urls")),
    path("", include("policyhub.web.urls")),
]
