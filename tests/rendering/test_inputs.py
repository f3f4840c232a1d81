"""A team's inputs digest (rendering/inputs.py) decides whether a publish renders the team again;
a change it misses would leave machines on stale files. So: policies changed anywhere at random
(a node's key, an endpoint, the window, a team moved or renamed) are rendered in full, and every
team whose digest stayed the same must render exactly as before."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.document import NODE_SECTIONS, DocumentInvalid
from policyhub.policies.domain import CodexWindow, OrgPolicy
from policyhub.policies.validation import used_endpoints, validate_team
from policyhub.rendering import inputs
from policyhub.rendering.inputs import team_input_digests
from policyhub.rendering.render import render_release

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "valid"
DOCUMENTS = [
    document.to_dict(document.parse(path.read_text()))
    for path in [*sorted(CORPUS.glob("*.toml")), ACME]
]
# As the documents give them back (the digest counts key order, which a round trip may change).
BASES = [document.from_dict(doc) for doc in DOCUMENTS]

Path_ = tuple[str | int, ...]


def _walk(value: Any, at: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield at, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*at, key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _walk(item, (*at, n))


# Values and table entries met anywhere in the corpus: a change made of them is often still a
# valid policy, so the comparison below has rendered files to compare, not only refusals.
VALUES = sorted(
    {repr(v): v for doc in DOCUMENTS for _, v in _walk(doc) if not isinstance(v, dict)}.values(),
    key=repr,
)
# The same, by the key they were met under: the likeliest to make sense there.
BY_KEY: dict[str | int, list[Any]] = {}
for _doc in DOCUMENTS:
    for _at, _value in _walk(_doc):
        if _at and _value not in BY_KEY.setdefault(_at[-1], []):
            BY_KEY[_at[-1]].append(_value)
ENTRIES = sorted(
    {
        repr((key, item)): (key, item)
        for doc in DOCUMENTS
        for _, value in _walk(doc)
        if isinstance(value, dict)
        for key, item in value.items()
    }.values(),
    key=repr,
)


AREAS = {
    "organization": {"organization"},
    "providers": {"providers"},
    "codex": {"codex"},
    "root": set(NODE_SECTIONS),
    "teams": {"teams"},
}


def _parent(doc: Any, at: Path_) -> Any:
    for step in at[:-1]:
        doc = doc[step]
    return doc


@st.composite
def changed(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one to three changes anywhere: a value replaced, a key removed, an entry
    added, a key renamed (a team moved, an endpoint renamed)."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        # Each part of the document as likely as any other, however large the teams' part is.
        area = draw(st.sampled_from(sorted(AREAS)))
        if area == "codex" and "codex" not in doc:
            doc["codex"] = copy.deepcopy(draw(st.sampled_from(BY_KEY["codex"])))
        places = [at for at, _ in _walk(doc) if at and at[0] in AREAS[area]]
        places = places or [at for at, _ in _walk(doc) if at]
        at = draw(st.sampled_from(places))
        parent = _parent(doc, at)
        kind = draw(st.sampled_from(["replace", "remove", "add", "rename"]))
        if kind == "replace":
            values = st.sampled_from(VALUES)
            if len(BY_KEY.get(at[-1], [])) > 1:
                values = st.sampled_from(BY_KEY[at[-1]]) | values
            parent[at[-1]] = copy.deepcopy(draw(values))
        elif kind == "remove":
            del parent[at[-1]]
        elif kind == "add":
            target = parent[at[-1]] if isinstance(parent[at[-1]], dict) else parent
            if isinstance(target, dict):
                key, item = draw(st.sampled_from(ENTRIES))
                target[key] = copy.deepcopy(item)
        elif isinstance(parent, dict):
            keys = [key for key, _ in ENTRIES] + [f"{at[-1]}-2", "moved/x"]
            parent[draw(st.sampled_from(keys))] = parent.pop(at[-1])
    return doc


def outcome(policy: OrgPolicy, path: str) -> str:
    """What publishing the team would store: its content digest, or the kind of refusal."""
    try:
        return render_release(policy, path, revision="1").content_digest
    except ApplicationError as refused:
        return f"refused: {type(refused).__name__}"


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150")) * 3  # a few milliseconds each


def test_no_change_that_alters_a_teams_files_leaves_its_digest() -> None:
    compared: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=timedelta(seconds=10),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        n = data.draw(st.integers(0, len(BASES) - 1), label="base")
        before = BASES[n]
        try:
            after = document.from_dict(data.draw(changed(DOCUMENTS[n]), label="changed"))
        except DocumentInvalid:
            event("not a policy")
            return  # nothing is published from it
        old, new = team_input_digests(before), team_input_digests(after)
        for path in sorted(old.keys() & new.keys()):
            if old[path] == new[path]:
                same = outcome(before, path)
                assert outcome(after, path) == same, path
                compared.append(path)
                event("a team kept its digest: " + ("refused" if ":" in same else "rendered"))
            else:
                event("a team's digest moved")

    check()
    # Not vacuous: many teams kept their digest beside a change, and were compared in full.
    assert len(compared) >= EXAMPLES // 10, len(compared)


def test_a_team_change_reaches_the_team_and_below_only() -> None:
    policy = document.parse(ACME.read_text())
    parent = next(
        path for path in policy.teams if any(p.startswith(f"{path}/") for p in policy.teams)
    )
    spec = policy.teams[parent]
    config = {**spec.node.config, "model_reasoning_effort": "low"}
    edited = replace(
        policy,
        teams={**policy.teams, parent: replace(spec, node=replace(spec.node, config=config))},
    )
    old, new = team_input_digests(policy), team_input_digests(edited)
    moved = {path for path in policy.teams if old[path] != new[path]}
    assert moved == {p for p in policy.teams if p == parent or p.startswith(f"{parent}/")}


def test_an_endpoint_change_reaches_the_teams_that_name_it_only() -> None:
    policy = document.parse(ACME.read_text())
    old = team_input_digests(policy)
    partial = 0
    for name, endpoint in policy.endpoints.items():
        settings_ = {**endpoint.settings, "request_max_retries": 7}
        edited = replace(
            policy, endpoints={**policy.endpoints, name: replace(endpoint, settings=settings_)}
        )
        new = team_input_digests(edited)
        moved = {path for path in policy.teams if old[path] != new[path]}
        # At least every team whose files use it; at most those whose nodes mention it.
        using = {
            path
            for path in policy.teams
            if name in used_endpoints(policy, validate_team(policy, path).resolved)
        }
        mentioning = {
            path
            for path in policy.teams
            if any(name in repr(node) for _, node in policy.chain(path))
        }
        assert using <= moved <= mentioning, name
        partial += 0 < len(moved) < len(policy.teams)
    assert partial, "no endpoint of the demo is named by some teams only: nothing was shown"


def test_the_window_and_the_slug_reach_every_team_and_a_team_name_none() -> None:
    policy = document.parse(ACME.read_text())
    old = team_input_digests(policy)
    window = replace(policy, codex=replace(policy.codex, accept_unenforced=()))
    slug = replace(policy, slug="other")
    assert all(old[p] != team_input_digests(window)[p] for p in policy.teams)
    assert all(old[p] != team_input_digests(slug)[p] for p in policy.teams)
    assert policy.codex != CodexWindow()
    path, spec = next(iter(policy.teams.items()))
    renamed = replace(policy, teams={**policy.teams, path: replace(spec, name="Another name")})
    assert team_input_digests(renamed) == old


def test_the_code_digest_moves_with_the_code_and_its_data_only(tmp_path: Path) -> None:
    # Under a folder named like one the digest leaves out: only the package's own folders count.
    package = tmp_path / "migrations" / "renderer_probe"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "table.tsv").write_text("0.169.0\tx\n")
    first = inputs.code_digest([package])
    # What Python, an editor or a merge leave beside the code is not the code.
    (package / "__pycache__" / "table.cpython-311.pyc").write_bytes(b"compiled")
    (package / ".table.tsv.swp").write_bytes(b"editing")
    (package / "__init__.py.orig").write_text("old")
    assert inputs.code_digest([package]) == first
    (package / "table.tsv").write_text("0.170.0\tx\n")
    second = inputs.code_digest([package])
    assert second != first
    (package / "__init__.py").write_text("LIMIT = 2\n")
    assert inputs.code_digest([package]) != second
    assert inputs.code_digest(inputs.RENDERER_PACKAGES) == inputs.RENDERER_DIGEST
