"""Anti-rollback: the agent never goes back to an older revision of its team, and takes another
team's release only when the server proves the move with a signed assignment newer than any it
saw. Every bundle here is validly signed by the organisation's pinned key: what is refused is a
replay, not a forgery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.agent.support import FakeHub, Signer, bundle, default_files, enroll, run, snapshot

STATE = "var/lib/policyhub-agent"
STATUS = "/api/v1/device/status"
OTHER = "research"


def state_of(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / STATE / "state.json").read_text())
    return data


def files_of(revision: int) -> dict[str, str]:
    files = default_files()
    files["requirements.toml"] = f'allowed_sandbox_modes = ["read-only"]  # revision {revision}\n'
    return files


def refused(root: Path, hub: FakeHub, reason: str) -> None:
    """The sync fails naming `reason`, nothing on disk changes, the server hears of it."""
    before = snapshot(root, skip=(STATE,))
    result = run(root, "sync")
    assert result.code == 1, result.out
    assert reason in result.err
    assert snapshot(root, skip=(STATE,)) == before
    assert reason in state_of(root)["last_error"]
    report = hub.requests(STATUS)[-1].body["errors"][0]
    assert report.startswith("bundle refused") and reason in report


def test_an_older_revision_of_the_same_team_is_refused(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    hub.publish(bundle(signer, revision=3, files=files_of(3)))
    assert run(root, "sync").out.strip().endswith("revision 3 applied")
    hub.publish(bundle(signer, revision=2, files=files_of(2)))  # the looser, older policy
    refused(root, hub, "revision 2 of team engineering/web is older than revision 3")
    assert state_of(root)["high_water"] == {"engineering/web": 3}
    # The same revision again is no downgrade: it is the release already applied.
    hub.publish(bundle(signer, revision=3, files=files_of(3)))
    assert run(root, "sync").code == 0


def test_a_state_from_before_high_water_marks_still_refuses_a_downgrade(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    hub.publish(bundle(signer, revision=5, files=files_of(5)))
    assert enroll(root, hub).code == 0
    path = root / STATE / "state.json"
    data = json.loads(path.read_text())
    del data["high_water"], data["assignment"]  # as agent 0.3.0 wrote it
    path.write_text(json.dumps(data))
    hub.publish(bundle(signer, revision=4, files=files_of(4)))
    refused(root, hub, "revision 4 of team engineering/web is older than revision 5")


def test_another_teams_release_is_refused_without_a_signed_move(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    # Another team's current release, served to this machine: the assignment still says web.
    hub.publish(bundle(signer, revision=9, team=OTHER, files=files_of(9)))
    refused(root, hub, "is for team research, but the server assigns this machine to team")
    assert state_of(root)["team"] == "engineering/web"


def test_a_signed_move_switches_the_team_and_a_replayed_older_move_is_refused(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    assert state_of(root)["assignment"] == 0
    hub.assigned_team, hub.assignment = OTHER, 1
    research = bundle(signer, revision=2, team=OTHER, files=files_of(2))
    hub.publish(research)
    assert run(root, "sync").out.strip().endswith("revision 2 applied")
    current = state_of(root)
    assert (current["team"], current["assignment"]) == (OTHER, 1)
    # Moved back to web (assignment 2) and applied there.
    hub.assigned_team, hub.assignment = "engineering/web", 2
    hub.publish(bundle(signer, revision=4, files=files_of(4)))
    assert run(root, "sync").code == 0
    assert state_of(root)["high_water"] == {"engineering/web": 4, OTHER: 2}
    # A replay of the first move (its assignment and research's release) is refused.
    hub.assigned_team, hub.assignment = OTHER, 1
    hub.publish(research)
    refused(root, hub, "(number 1) is not newer than the one this machine follows (number 2)")


def test_an_assignment_signed_by_a_key_that_is_not_pinned_is_refused(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    hub.assigned_team, hub.assignment, hub.assignment_signer = OTHER, 7, Signer()
    hub.publish(bundle(signer, revision=2, team=OTHER, files=files_of(2)))
    refused(root, hub, "the team assignment is signed by key")


def test_an_assignment_for_another_device_is_refused(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    assert enroll(root, hub).code == 0
    hub.assigned_team, hub.assignment = OTHER, 1
    hub.device_id = "00000000-0000-4000-8000-000000000000"  # another machine's assignment
    hub.publish(bundle(signer, revision=2, team=OTHER, files=files_of(2)))
    refused(root, hub, "the signed team assignment is for another device")
