"""HTML pages: an organisation's team tree, and per team its effective policy with provenance
("why does team X get value Y") and the exact files Codex would receive."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from policyhub.accounts.access import organization_for_request
from policyhub.accounts.selectors import organizations_for
from policyhub.fleet.selectors import codex_versions_seen
from policyhub.policies.selectors import org_policy
from policyhub.policies.validation import validate_policy, validate_team
from policyhub.policies.window import accepted_unenforced
from policyhub.releases.selectors import current_releases
from policyhub.rendering.render import PolicyInvalid, RenderedTeam, render_team


def shown(value: object) -> str:
    """A value as an admin writes it: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html", {"organizations": organizations_for(request.user)})


@login_required
def organization_detail(request: HttpRequest, slug: str) -> HttpResponse:
    org, _ = organization_for_request(request, slug)
    policy = org_policy(org)
    found = validate_policy(policy)
    teams = [
        {
            "spec": team,
            "depth": path.count("/"),
            "errors": sum(i.severity == "error" for i in found.get(path, [])),
            "warnings": sum(i.severity == "warning" for i in found.get(path, [])),
        }
        for path, team in sorted(policy.teams.items())
    ]
    context = {
        "org": org,
        "policy": policy,
        "teams": teams,
        "org_issues": found.get("", []),
        "codex_seen": codex_versions_seen(org),
        "accepted": accepted_unenforced(policy.codex),
    }
    return render(request, "web/organization.html", context)


@login_required
def team_detail(request: HttpRequest, slug: str, path: str) -> HttpResponse:
    org, _ = organization_for_request(request, slug)
    policy = org_policy(org)
    if path not in policy.teams:
        raise Http404("no such team")
    try:
        rendered: RenderedTeam | None = render_team(policy, path)
    except PolicyInvalid:
        rendered = None
    validation = rendered.validation if rendered else validate_team(policy, path)
    files = {n: b.decode() for n, b in rendered.files.items()} if rendered else {}
    resolved = validation.resolved
    rows = [
        ("requirements", key, shown(value), resolved.requirements_from.get(key))
        for key, value in sorted(resolved.requirements.items())
    ] + [
        ("config", key, shown(value), resolved.config_from.get(key))
        for key, value in sorted(resolved.config.items())
    ]
    profiles = [
        (
            name,
            [
                (k, shown(v), resolved.profiles_from[name].get(k))
                for k, v in sorted(settings.items())
            ],
        )
        for name, settings in sorted(resolved.profiles.items())
    ]
    context = {
        "org": org,
        "team": policy.teams[path],
        "chain": [label for label, _ in policy.chain(path)],
        "rows": rows,
        "profiles": profiles,
        "issues": validation.issues,
        "files": sorted(files.items()),
        "published": current_releases(org).filter(team_path=path).first(),
    }
    return render(request, "web/team.html", context)
