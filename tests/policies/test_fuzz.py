"""Fuzzing the ways a policy arrives: the document parser (TOML text and the API's data) and the
browser's node form. Whatever comes in (wrong types, deep nesting, control and invisible
characters, TOML injection, huge values), the answer is a policy or a refusal whose every finding
names a field path, never another exception, and within a second (hypothesis's deadline)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyhub.policies import document, limits
from policyhub.policies.document import DocumentInvalid
from policyhub.policies.validation import validate_policy
from policyhub.web.team_forms import TomlForm
from tests.conftest import BASE

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=timedelta(seconds=1),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text that breaks things: controls, invisible and direction characters, TOML syntax, surrogates
# are impossible in TOML text but not in the API's JSON strings.
NASTY = st.text(
    st.sampled_from(
        list("abc-_./\"'\\[]{}=#,\n\t \x00\x1b\x7f\u200b\u200f\u202e\u2066\ufeff\U000e0041é漢")
    ),
    max_size=40,
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "organization",
            "slug",
            "name",
            "providers",
            "kind",
            "teams",
            "codex",
            "requirements",
            "config",
            "profiles",
            "mcp_servers",
            "model",
            "model_provider",
            "rules",
            "prefix_rules",
            "pattern",
            "decision",
            "token",
            "notify",
            "command",
            "args",
            "env",
            "allowed_sandbox_modes",
            "sandbox_mode",
            "min_version",
            "platform",
            "platform/ci",
        ]
    ),
    NASTY,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    NASTY,
    st.text(max_size=limits.STRING_CHARS + 2).filter(lambda s: len(s) < 200 or len(s) > 65_000),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=40,
)


def deep(levels: int) -> Any:
    value: Any = "x"
    for n in range(levels):
        value = [value] if n % 2 else {"k": value}
    return value


def only_findings_with_paths(refused: DocumentInvalid) -> None:
    assert refused.issues, "a refusal names at least one finding"
    for issue in refused.issues:
        assert issue.path, f"a finding without a field path: {issue}"
        assert issue.message


def judged(raw: Any) -> None:
    """The data is a policy (then validation runs on it without failing) or a refusal with
    paths; `document.from_dict` is what the API's JSON and the forms go through."""
    try:
        policy = document.from_dict(raw)
    except DocumentInvalid as refused:
        only_findings_with_paths(refused)
        return
    for issues in validate_policy(policy).values():
        assert all(issue.path or issue.node for issue in issues)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"organization": st.just({"slug": "acme", "name": "Acme"})},
        optional={
            "teams": st.dictionaries(KEYS, VALUES, max_size=4),
            "config": VALUES,
            "requirements": VALUES,
            "profiles": VALUES,
            "mcp_servers": VALUES,
            "providers": VALUES,
            "codex": VALUES,
        },
    )
)
def test_any_data_is_a_policy_or_a_refusal_with_paths(raw: dict[str, Any]) -> None:
    judged(raw)


@FUZZ
@given(st.integers(limits.DEPTH + 1, 5000), st.sampled_from(["config", "requirements"]))
def test_deep_nesting_is_refused_at_its_path(levels: int, section: str) -> None:
    raw = {"organization": {"slug": "acme", "name": "Acme"}, section: {"x": deep(levels)}}
    judged(raw)
    text = BASE + f"[{section}]\nx = " + "[" * levels + "]" * levels + "\n"
    try:
        document.parse(text)
    except DocumentInvalid as refused:
        only_findings_with_paths(refused)
    else:
        raise AssertionError(f"{levels} levels of arrays were accepted")


@FUZZ
@given(
    st.lists(
        st.one_of(NASTY, st.sampled_from(["[config]\n", "[teams.t]\n", " = ", '"'])), max_size=30
    )
)
def test_any_text_is_a_policy_or_a_refusal_with_paths(pieces: list[str]) -> None:
    text = BASE + "".join(pieces)
    try:
        document.parse(text)
    except DocumentInvalid as refused:
        only_findings_with_paths(refused)


@FUZZ
@given(NASTY, st.sampled_from(["model", "model_provider", "sandbox_mode", "notify"]))
def test_injection_through_any_value_changes_no_other_key(value: str, key: str) -> None:
    """A value cannot close its string and add a key: parsed back, the document holds exactly
    the one key it was given."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    try:
        policy = document.parse(BASE + f'[teams.t.config]\n{key} = "{escaped}"\n')
    except DocumentInvalid as refused:
        only_findings_with_paths(refused)
        return
    assert policy.teams["t"].node.config == {key: value}


@FUZZ
@given(
    st.lists(
        st.one_of(NASTY, st.sampled_from(["[config]\n", "[profiles.p]\n", "x = ", "["])),
        max_size=30,
    )
)
def test_the_node_form_refuses_with_a_reason_or_takes_the_tables(pieces: list[str]) -> None:
    form = TomlForm({"node-toml": "".join(pieces)}, current={})
    if not form.is_valid():
        assert form.errors["toml"], form.errors
