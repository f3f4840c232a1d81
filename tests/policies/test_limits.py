"""Bounded input: every bound of policies/limits.py refuses at its field path before anything
else reads the document, text keeps what right-to-left scripts need and nothing that reorders
it, and every refusal points at the team, the node and the field."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from policyhub.errors import ApplicationError
from policyhub.policies import document, limits
from policyhub.policies.document import DocumentInvalid
from policyhub.policies.services import policy_check
from policyhub.policies.validation import validate_team
from tests.conftest import BASE, make_policy


def refusal(text: str) -> dict[str, str]:
    with pytest.raises(DocumentInvalid) as refused:
        document.parse(text)
    return {issue.path: issue.message for issue in refused.value.issues}


def rules(count: int, word: str = "cmd") -> str:
    return ",\n".join(
        f'  {{ pattern = [{{ token = "{word}{n}" }}], decision = "prompt" }}' for n in range(count)
    )


def test_a_huge_document_is_refused_whole_before_it_is_parsed() -> None:
    text = BASE + "[config]\nmodel = " + '"' + "x" * limits.DOCUMENT_CHARS + '"\n'
    started = time.monotonic()
    assert refusal(text) == {
        "document": f"is {len(text):,} characters long; at most {limits.DOCUMENT_CHARS:,}"
    }
    assert time.monotonic() - started < 1.0  # refused by its length, not parsed


def test_prefix_rules_past_the_bound_are_refused_at_their_path() -> None:
    count = limits.PREFIX_RULES + 1
    found = refusal(BASE + f'[teams."t".requirements.rules]\nprefix_rules = [\n{rules(count)}\n]\n')
    assert found == {
        "teams.t.requirements.rules.prefix_rules": (
            f"lists {count:,} items; at most {limits.PREFIX_RULES:,}"
        )
    }


def test_a_team_whose_own_and_inherited_rules_pass_the_bound_is_refused_by_name() -> None:
    half = limits.PREFIX_RULES // 2 + 1
    policy = make_policy(f"""
        [requirements.rules]
        prefix_rules = [
        {rules(half, "root")}
        ]
        [teams.t.requirements.rules]
        prefix_rules = [
        {rules(half, "team")}
        ]
    """)
    issues = validate_team(policy, "t").issues
    assert [(i.path, i.node) for i in issues if i.severity == "error"] == [
        ("requirements.rules.prefix_rules", "t")
    ]
    assert f"{2 * half:,}" in issues[0].message


@pytest.mark.parametrize(
    ("snippet", "path", "says"),
    [
        (
            "[config]\nnotify = [" + ", ".join(['"x"'] * (limits.LIST_ITEMS + 1)) + "]\n",
            "config.notify",
            "at most 1,000",
        ),
        (
            '[config]\nmodel = "' + "m" * (limits.STRING_CHARS + 1) + '"\n',
            "config.model",
            "longer than 65,536 characters",
        ),
        (
            "[profiles]\n"
            + "".join(f"p{n} = {{ model = 'm' }}\n" for n in range(limits.PROFILES + 1)),
            "profiles",
            f"at most {limits.PROFILES}",
        ),
        (
            "[teams.t.mcp_servers]\n"
            + "".join(f"s{n} = {{ command = 'c' }}\n" for n in range(limits.MCP_SERVERS + 1)),
            "teams.t.mcp_servers",
            f"at most {limits.MCP_SERVERS}",
        ),
        (
            "[requirements.mcp_servers]\n"
            + "".join(
                f"s{n} = {{ identity = {{ command = 'c' }} }}\n"
                for n in range(limits.MCP_SERVERS + 1)
            ),
            "requirements.mcp_servers",
            f"at most {limits.MCP_SERVERS}",
        ),
        (
            "[config]\nx = " + "[" * (limits.DEPTH + 1) + "]" * (limits.DEPTH + 1) + "\n",
            "config.x" + "[0]" * (limits.DEPTH - 2),
            f"deeper than {limits.DEPTH} levels",
        ),
        ("[config]\nx = " + "[" * 100_000 + "\n", "document", f"deeper than {limits.DEPTH}"),
    ],
    ids=["list", "string", "profiles", "mcp-servers", "identities", "depth", "deep-text"],
)
def test_each_bound_is_refused_at_its_field_path(snippet: str, path: str, says: str) -> None:
    found = refusal(BASE + snippet)
    assert list(found) == [path] and says in found[path]


def test_too_many_teams_are_refused_in_the_apis_data_too() -> None:
    raw: dict[str, Any] = {
        "organization": {"slug": "acme", "name": "Acme"},
        "teams": {f"t{n}": {} for n in range(limits.TEAMS + 1)},
    }
    with pytest.raises(DocumentInvalid) as refused:
        document.from_dict(raw)
    assert [(i.path, i.message) for i in refused.value.issues] == [
        ("teams", f"has {limits.TEAMS + 1:,} entries; at most {limits.TEAMS:,}")
    ]


def test_data_that_would_write_a_document_past_the_bound_is_refused() -> None:
    # Each value within every bound, together more than a document may hold: refused, so what
    # is stored can always be exported and read back.
    raw = {
        "organization": {"slug": "acme", "name": "Acme"},
        "teams": {
            f"t{n}": {"config": {f"k{k}": "x" * 60_000 for k in range(20)}} for n in range(6)
        },
    }
    with pytest.raises(DocumentInvalid) as refused:
        document.from_dict(raw)
    assert [i.path for i in refused.value.issues] == ["document"]
    assert f"at most {limits.DATA_CHARS:,}" in refused.value.issues[0].message


def test_a_refusal_lists_a_bounded_number_of_findings() -> None:
    long = "x" * (limits.STRING_CHARS + 1)
    raw = {"organization": {"slug": "acme", "name": "Acme"}, "config": {"notify": [long] * 500}}
    with pytest.raises(DocumentInvalid) as refused:
        document.from_dict(raw)
    assert len(refused.value.issues) == limits.MAX_ISSUES


# --- text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "שלום\u200f",
        "\u200fفريق المنصة",
        "زبان\u200cها",  # noqa: RUF001 - Persian, with the joiner it needs
        "Team \u061c(ع)",
        "\u200eAcme",
        "Infra\xadstructure",  # a soft hyphen, as pasted from a word processor
        "Wales \U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f",
    ],
)
def test_names_keep_the_marks_right_to_left_scripts_need(name: str) -> None:
    policy = make_policy(f'[teams.t]\nname = "{name}"\n')
    assert policy.teams["t"].name == name


@pytest.mark.parametrize("char", ["\u202e", "\u202b", "\u2066", "\u2069", "\u200b", "\ufeff"])
def test_names_refuse_what_reorders_or_hides_text(char: str) -> None:
    found = refusal(BASE + f'[teams.t]\nname = "a{char}b"\n')
    assert list(found) == ["teams.t.name"] and f"U+{ord(char):04X}" in found["teams.t.name"]


@pytest.mark.parametrize("char", ["\u200e", "\u200f", "\u061c", "\u2064", "\U000e0041", "\xad"])
def test_fields_codex_interprets_refuse_every_invisible_character(char: str) -> None:
    policy = make_policy(f'[teams.t.config]\nmodel = "gpt{char}-5.5"\n')
    with pytest.raises(ApplicationError) as refused:
        policy_check(policy)
    assert [(i.path, i.node) for i in refused.value.issues] == [("config.model", "t")]


@pytest.mark.parametrize("char", ["\u200d", "\u200c", "\u2028", "\u3164"])
def test_a_rule_token_cannot_hide_a_character_that_makes_it_match_nothing(char: str) -> None:
    policy = make_policy(
        "[teams.t.requirements.rules]\n"
        f'prefix_rules = [{{ pattern = [{{ token = "r{char}m" }}], decision = "forbidden" }}]\n'
    )
    with pytest.raises(ApplicationError) as refused:
        policy_check(policy)
    assert [i.path for i in refused.value.issues] == [
        "requirements.rules.prefix_rules[0].pattern[0].token"
    ]


# --- errors that point ---------------------------------------------------------------------------


def test_a_toml_syntax_error_names_its_line_column_and_table() -> None:
    text = BASE + textwrap.dedent("""
        [teams."platform/ci"]
        name = "CI"
        [teams."platform/ci".config]
        model = "gpt-5.5"
        sandbox_mode = = "read-only"
    """)
    line = text.splitlines().index('sandbox_mode = = "read-only"') + 1
    found = refusal(text)
    assert list(found) == ["teams.platform/ci.config"]
    assert (
        f"at line {line}, column 16 (in [teams.platform/ci.config])"
        in found["teams.platform/ci.config"]
    )


def test_an_indented_array_line_is_not_taken_for_the_table_of_a_syntax_error() -> None:
    text = BASE + '[teams.t.requirements.rules]\nprefix_rules = [\n  ["git", "push"]\n]\nx = = 1\n'
    assert list(refusal(text)) == ["teams.t.requirements.rules"]


def test_an_inherited_finding_names_the_teams_whose_files_it_breaks() -> None:
    # The root's profile asks for live web search; the Bedrock endpoint the teams below use
    # has none. The value is the root's; the broken profiles are the teams'.
    teams = "".join(
        f'[teams.b{n}.config]\nmodel = "openai.gpt-oss-120b"\nmodel_provider = "bedrock"\n'
        'web_search = "disabled"\n'
        for n in range(5)
    )
    policy = make_policy('[profiles.deep]\nweb_search = "live"\n' + teams)
    with pytest.raises(ApplicationError) as refused:
        policy_check(policy)
    inherited = [i for i in refused.value.issues if i.path == "profiles.deep.web_search"]
    assert len(inherited) == 1, refused.value.issues
    assert inherited[0].node == policy.root_label
    assert inherited[0].message.endswith("(in teams b0, b1, b2 and 2 more)")
