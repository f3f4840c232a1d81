from policyhub.web.views import (
    audit,
    changes,
    dashboard,
    endpoints,
    fleet,
    home,
    releases,
    settings,
    team,
    teams,
)

# Order matters where routes overlap: a team's own sub-pages before the team page itself.
urlpatterns = [
    *home.urlpatterns,
    *dashboard.urlpatterns,
    *endpoints.urlpatterns,
    *changes.urlpatterns,
    *releases.urlpatterns,
    *fleet.urlpatterns,
    *settings.urlpatterns,
    *audit.urlpatterns,
    *teams.urlpatterns,
    *team.urlpatterns,
]
