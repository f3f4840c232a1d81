"""URL routes: sign-in (django-allauth), the admin site behind it, invitations, the API (each
app's own routes under /api/v1, its schema and interactive page), device delivery, and pages."""

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from policyhub.accounts import views as account_views

# The admin uses the same sign-in, and so the same MFA and rate limits, as everything else.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "PolicyHub administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("invitations/<str:secret>/", account_views.invitation, name="invitation"),
    # The API's description and its interactive page are public: the shape of the API is no
    # secret, and every operation still needs a credential.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("policyhub.accounts.urls")),
    path("", include("policyhub.policies.urls")),
    path("", include("policyhub.changes.urls")),
    path("", include("policyhub.releases.urls")),
    path("", include("policyhub.history.urls")),
    path("", include("policyhub.delivery.urls")),
    path("", include("policyhub.fleet.urls")),
    path("", include("policyhub.exports.urls")),
    path("", include("policyhub.web.urls")),
]
