"""How requirement areas narrow down the tree: a team may make its parent's table stricter,
never looser, also by adding a key the parent's table left out."""

from __future__ import annotations

import pytest

from policyhub.policies import document
from policyhub.policies.validation import validate_policy, validate_team

HEAD = """
[organization]
slug = "acme"
name = "Acme"

[providers.openai]
kind = "openai"
auth_method = "chatgpt"

[config]
model = "gpt-5.5"
model_provider = "openai"
"""


def errors(root: str, team: str) -> set[str]:
    text = f"{HEAD}\n[requirements]\n{root}\n[teams.t.requirements]\n{team}\n"
    return {
        issue.path
        for issues in validate_policy(document.parse(text)).values()
        for issue in issues
        if issue.severity == "error"
    }


WIDENINGS = {
    "an origin allowed where the default denies": (
        'browser_use = { default_origin_policy = { access = "deny" } }',
        'browser_use = { origins = { "https://evil.example" = { access = "allow" } } }',
        "requirements.browser_use.origins.https://evil.example.access",
    ),
    "an app allowed where the parent sets no list": (
        'computer_use = { default_app_access = "deny" }',
        'computer_use = { macos = { bundle_ids = { "com.apple.Terminal" = "allow" } } }',
        "requirements.computer_use.macos.bundle_ids.com.apple.Terminal",
    ),
    "an executable added below": (
        'computer_use = { windows = { exes = [{ access = "deny", product_name = "A", '
        'publisher_name = "B" }] } }',
        'computer_use = { windows = { exes = [{ access = "allow", product_name = "A", '
        'publisher_name = "B" }] } }',
        "requirements.computer_use.windows.exes",
    ),
    "a host allowed where the parent lists none": (
        "network_proxy = { enabled = true, managed_allowed_domains_only = true }",
        'network_proxy = { domains = { "evil.example" = "allow" } }',
        "requirements.network_proxy.domains.evil.example",
    ),
    "a dangerous switch the parent's table leaves off": (
        "network_proxy = { enabled = true }",
        "network_proxy = { dangerously_allow_non_loopback_proxy = true }",
        "requirements.network_proxy.dangerously_allow_non_loopback_proxy",
    ),
    "rules auto review may ignore, added below": (
        'auto_review = { required_on_models = ["gpt-5.5"] }',
        'auto_review = { ignore_rules = ["all"] }',
        "requirements.auto_review.ignore_rules",
    ),
    "a desktop storage path changed below": (
        'application = { storage = { default_project_parent = "/srv/p" } }',
        'application = { storage = { default_project_parent = "/tmp" } }',
        "requirements.application.storage",
    ),
}


@pytest.mark.parametrize("case", WIDENINGS, ids=list(WIDENINGS))
def test_a_team_cannot_widen_a_table_by_adding_what_its_parent_left_out(case: str) -> None:
    root, team, path = WIDENINGS[case]
    assert path in errors(root, team)


NARROWINGS = {
    "an origin denied": (
        'browser_use = { default_origin_policy = { access = "allow" } }',
        'browser_use = { default_origin_policy = { access = "deny" }, origins = { '
        '"https://x.example" = { access = "deny" } } }',
    ),
    "apps denied by default": (
        'computer_use = { default_app_access = "allow" }',
        'computer_use = { default_app_access = "deny", allow_persistent_approval = false }',
    ),
    "a host denied": (
        'network_proxy = { enabled = true, domains = { "pypi.org" = "allow" } }',
        'network_proxy = { domains = { "pypi.org" = "deny", "x.example" = "deny" } }',
    ),
    "a switch turned off": (
        "network_proxy = { enabled = true, allow_upstream_proxy = true }",
        "network_proxy = { allow_upstream_proxy = false, allow_local_binding = false }",
    ),
}


@pytest.mark.parametrize("case", NARROWINGS, ids=list(NARROWINGS))
def test_a_team_may_narrow_a_table(case: str) -> None:
    root, team = NARROWINGS[case]
    assert errors(root, team) == set()


def test_new_thread_defaults_merge_key_by_key() -> None:
    text = (
        f'{HEAD}\n[requirements.models.new_thread]\nmodel = "gpt-5.5"\n'
        'model_reasoning_effort = "high"\nservice_tier = "flex"\n'
        '[teams.t.requirements.models.new_thread]\nmodel = "gpt-5.5-mini"\n'
    )
    resolved = validate_team(document.parse(text), "t").resolved
    assert resolved.requirements["models"] == {
        "new_thread": {
            "model": "gpt-5.5-mini",
            "model_reasoning_effort": "high",
            "service_tier": "flex",
        }
    }


def test_a_key_added_below_is_written_even_where_it_equals_the_assumed_default() -> None:
    text = (
        f"{HEAD}\n[requirements.computer_use]\nallow_locked_computer_use = false\n"
        '[teams.t.requirements.computer_use]\ndefault_app_access = "deny"\n'
    )
    resolved = validate_team(document.parse(text), "t").resolved
    assert resolved.requirements["computer_use"]["default_app_access"] == "deny"
