"""Exports of the trail: every format matches the database, is filtered in SQL, streams, and
verifies against its signed manifest; a file with a row removed or changed does not."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone

from policyhub.accounts.models import Role
from policyhub.accounts.services import membership_grant
from policyhub.audit.models import AuditEvent
from policyhub.audit.services import audit_record
from policyhub.exports.files import AUDIT_COLUMNS
from policyhub.exports.formats import FORMATS, read
from policyhub.exports.manifest import export_verify
from policyhub.policies.services import policy_apply
from policyhub.releases.models import SigningKey
from tests.conftest import OPERATOR, acting, make_policy, person

pytestmark = pytest.mark.django_db

AWKWARD = [
    'a "quoted", comma\nnewline',
    "ünïcödé עברית\u200f 🎉",
    "=SUM(A1)",
    "",
]


@pytest.fixture
def trail(cast: dict[str, Any]) -> dict[str, Any]:
    acme = cast["acme"]
    policy_apply(
        organization=acme,
        wanted=make_policy('[teams.platform]\n[teams."platform/ci".config]\nmodel = "o3"\n'),
        actor=OPERATOR,
        reason="first teams",
    )
    with transaction.atomic():
        for i, text in enumerate(AWKWARD):
            audit_record(
                organization_id=acme.pk,
                actor=OPERATOR,
                action="test.awkward",
                object_type="team",
                object_key=f"team platform/ci {i}",
                before={"text": text, "n": [1.5, 10**20, None]},
                after=text or None,
                reason=text,
            )
    membership_grant(
        actor=acting(cast["owner"]), organization=acme, user=person("reader"), role=Role.VIEWER
    )
    return cast


def _export(tmp_path: Path, file_format: str, *args: str) -> tuple[Path, Path]:
    out = tmp_path / f"events.{file_format}"
    call_command(
        "audit", "export", "--org", "acme", "--format", file_format, "--output", str(out), *args
    )
    return out, Path(f"{out}.manifest.json")


def _db_rows(events: Any) -> list[dict[str, Any]]:
    rows = []
    for event in events.order_by("seq"):
        row = {column.name: getattr(event, column.name) for column in AUDIT_COLUMNS}
        row["created_at"] = event.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        row["source_address"] = event.source_address or ""
        rows.append(row)
    return rows


def _file_rows(path: Path, file_format: str) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(read(file_format, AUDIT_COLUMNS, stream))


@pytest.mark.parametrize("file_format", FORMATS)
def test_an_export_matches_the_database_and_verifies(
    trail: dict[str, Any], tmp_path: Path, file_format: str
) -> None:
    acme = trail["acme"]
    through = AuditEvent.objects.filter(organization=acme).count()
    path, manifest_path = _export(tmp_path, file_format)
    expected = _db_rows(AuditEvent.objects.filter(organization=acme, seq__lte=through))
    assert _file_rows(path, file_format) == expected
    manifest = json.loads(manifest_path.read_text())
    assert manifest["rows"] == through and manifest["through"] == through
    assert manifest["first"]["seq"] == 1 and manifest["last"]["hash"] == expected[-1]["hash"]
    assert manifest["contiguous"] is True
    assert export_verify(path, manifest_path).ok
    # The export itself is in the trail, just past its pin.
    recorded = AuditEvent.objects.get(organization=acme, seq=through + 1)
    assert recorded.action == "audit.export" and recorded.after == {
        "filter": {},
        "through": through,
    }
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        call_command("audit", "verify-export", str(path), str(manifest_path), stdout=stream)
    assert out.read_text().strip() == f"OK: {through} rows match the signed manifest"


def _lines_without(path: Path, file_format: str, index: int) -> str:
    """The file with its `index`-th row removed, as a person editing it would leave it."""
    if file_format == "json":
        items = json.loads(path.read_text())
        del items[index]
        return json.dumps(items)
    lines = path.read_text().splitlines(keepends=True)
    header = 1 if file_format == "csv" else 0
    # CSV rows may span lines (quoted newlines): remove a row whose text has none.
    rows = [i for i, line in enumerate(lines) if i >= header and "test.awkward" not in line]
    del lines[rows[index]]
    return "".join(lines)


@pytest.mark.parametrize("file_format", FORMATS)
def test_a_file_with_one_row_removed_or_changed_does_not_verify(
    trail: dict[str, Any], tmp_path: Path, file_format: str
) -> None:
    path, manifest_path = _export(tmp_path, file_format)
    original = path.read_text()
    path.write_text(_lines_without(path, file_format, 2))
    check = export_verify(path, manifest_path)
    assert not check.ok
    assert any("sha256" in p for p in check.problems)
    assert any("rows, the manifest says" in p or "does not follow" in p for p in check.problems)
    with pytest.raises(CommandError, match="FAILED"):
        call_command("audit", "verify-export", str(path), str(manifest_path))
    # One value changed, the sha256 too (as a forger would): the row's hash still catches it.
    path.write_text(original.replace("first teams", "other reason", 1))
    manifest = json.loads(manifest_path.read_text())
    check = export_verify(path, manifest_path)
    assert any("row " in p and "does not match its hash" in p for p in check.problems), check
    # A manifest edited to match the changed file loses its signature.
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    problems = export_verify(path, manifest_path).problems
    assert any("signature" in p for p in problems)


def test_verification_offline_with_the_public_key(trail: dict[str, Any], tmp_path: Path) -> None:
    path, manifest_path = _export(tmp_path, "ndjson")
    key = SigningKey.objects.get(organization=trail["acme"], status="active")
    assert export_verify(path, manifest_path, public_key=key.public_key).ok
    other = SigningKey.objects.filter(organization=trail["other"]).first()
    if other is None:
        call_command("signing_key", "rotate", "--org", "other", stdout=StringIO())
        other = SigningKey.objects.get(organization=trail["other"], status="active")
    problems = export_verify(path, manifest_path, public_key=other.public_key).problems
    assert problems == ["manifest: the signature does not verify (altered or another key)"]


def _about_team(event: AuditEvent, path: str) -> bool:
    words = event.object_key.split(" ")
    return (event.object_type == "team" and words[1:2] == [path]) or (
        event.object_type == "release" and words[0] == path
    )


@pytest.mark.parametrize(
    ("option", "name", "value", "selects"),
    [
        ("--object-type", "object_type", "membership", lambda e: e.object_type == "membership"),
        ("--team", "team", "platform/ci", lambda e: _about_team(e, "platform/ci")),
        ("--actor", "actor", "owner@", lambda e: e.actor_label.startswith("owner@")),
    ],
)
def test_filters_select_in_the_database(
    trail: dict[str, Any], tmp_path: Path, option: str, name: str, value: str, selects: Any
) -> None:
    events = AuditEvent.objects.filter(organization=trail["acme"]).order_by("seq")
    wanted = [e.seq for e in events if selects(e)]
    assert 0 < len(wanted) < events.count()
    path, manifest_path = _export(tmp_path, "csv", option, value)
    assert [row["seq"] for row in _file_rows(path, "csv")] == wanted
    manifest = json.loads(manifest_path.read_text())
    assert manifest["contiguous"] is False and manifest["rows"] == len(wanted)
    assert manifest["filter"] == {name: value}
    assert export_verify(path, manifest_path).ok


def test_a_time_range_is_one_run_of_the_chain(trail: dict[str, Any], tmp_path: Path) -> None:
    acme = trail["acme"]
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    path, manifest_path = _export(tmp_path, "csv", "--until", tomorrow)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["contiguous"] is True and manifest["filter"] == {"until": tomorrow}
    assert export_verify(path, manifest_path).ok
    path, manifest_path = _export(tmp_path, "csv", "--since", tomorrow)
    assert json.loads(manifest_path.read_text())["rows"] == 0
    assert _file_rows(path, "csv") == []
    assert export_verify(path, manifest_path).ok
    assert AuditEvent.objects.filter(organization=acme).exists()


def test_bad_filters_are_refused_naming_them(trail: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="since"):
        _export(tmp_path, "csv", "--since", "yesterday-ish")
    with pytest.raises(CommandError, match="object_type"):
        _export(tmp_path, "csv", "--object-type", "nonsense")
    with pytest.raises(CommandError, match="--manifest is required"):
        call_command("audit", "export", "--org", "acme")


def test_the_api_streams_an_export_and_its_manifest_verifies(
    trail: dict[str, Any], tmp_path: Path
) -> None:
    client = Client()
    client.force_login(trail["auditor"])
    response = client.get("/api/v1/orgs/acme/audit/export/csv?object_type=team")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    through = int(response["X-Audit-Through"])
    link = response["Link"]
    assert link.endswith('>; rel="describedby"') and f"through={through}" in link
    # New events after the export do not change what its manifest describes.
    membership_grant(
        actor=OPERATOR, organization=trail["acme"], user=person("late"), role=Role.VIEWER
    )
    manifest = client.get(link[1 : link.index(">")].removeprefix("http://testserver"))
    assert manifest.status_code == 200, manifest.content
    (tmp_path / "e.csv").write_bytes(body)
    (tmp_path / "m.json").write_text(json.dumps(manifest.json()))
    check = export_verify(tmp_path / "e.csv", tmp_path / "m.json")
    assert check.ok, check
    assert (
        check.rows
        == AuditEvent.objects.filter(
            organization=trail["acme"], object_type="team", seq__lte=through
        ).count()
    )


def test_the_api_lists_events_newest_first_with_filters(trail: dict[str, Any]) -> None:
    client = Client()
    client.force_login(trail["auditor"])
    response = client.get("/api/v1/orgs/acme/audit/events?object_type=team&page_size=2")
    assert response.status_code == 200
    data = response.json()
    newest = AuditEvent.objects.filter(organization=trail["acme"], object_type="team")
    assert [e["seq"] for e in data["results"]] == [e.seq for e in newest.order_by("-id")[:2]]
    assert data["next"]
    assert data["results"][0]["hash"]


@pytest.mark.parametrize(
    ("who", "url", "status"),
    [
        ("viewer", "/api/v1/orgs/acme/audit/export/csv", 403),
        ("viewer", "/api/v1/orgs/acme/audit/events", 403),
        ("outsider", "/api/v1/orgs/acme/audit/export/csv", 404),
        ("auditor", "/api/v1/orgs/acme/audit/export/xlsx", 400),
        ("auditor", "/api/v1/orgs/acme/audit/export/csv?since=soon", 400),
        ("auditor", "/api/v1/orgs/acme/audit/export/csv?colour=red", 400),
        ("auditor", "/api/v1/orgs/acme/audit/export/csv/manifest", 400),
        ("auditor", "/api/v1/orgs/acme/audit/export/csv/manifest?through=99999", 400),
    ],
)
def test_the_api_refuses_clearly(trail: dict[str, Any], who: str, url: str, status: int) -> None:
    if who == "viewer":
        user = person("viewer")
        membership_grant(actor=OPERATOR, organization=trail["acme"], user=user, role=Role.VIEWER)
    else:
        user = trail[who]
    client = Client()
    client.force_login(user)
    count = AuditEvent.objects.count()
    response = client.get(url)
    assert response.status_code == status
    if status == 400:
        field = response.json()["errors"]
        assert set(field) & {"format", "since", "colour", "through"}, field
    assert AuditEvent.objects.count() == count  # a refused export records nothing


@pytest.mark.parametrize("file_format", FORMATS)
def test_python_writes_what_postgresql_writes(trail: dict[str, Any], file_format: str) -> None:
    """SQLite (`make run`) has no COPY: Python writes the file there. Row for row, a reader
    finds the same values in both."""
    from policyhub.exports.files import _python_rows, audit_export
    from policyhub.exports.formats import write

    export = audit_export(trail["acme"], file_format, {})
    copied = b"".join(export.chunks()).decode()
    written = b"".join(write(file_format, AUDIT_COLUMNS, _python_rows(AUDIT_COLUMNS, export.rows)))
    assert len(copied.splitlines()) >= export.pin["through"]

    def rows(text: str) -> list[dict[str, Any]]:
        return list(read(file_format, AUDIT_COLUMNS, StringIO(text, newline="")))

    assert rows(written.decode()) == rows(copied) and len(rows(copied)) == export.pin["through"]


def test_the_audit_page_offers_pinned_exports_that_verify(
    trail: dict[str, Any], tmp_path: Path
) -> None:
    import re
    from html import unescape

    client = Client()
    client.force_login(trail["auditor"])
    html = client.get("/orgs/acme/audit/", {"object_type": "team"}).content.decode()
    links = [unescape(href) for href in re.findall(r'href="([^"]*/audit/export/[^"]*)"', html)]
    files = [link for link in links if "/manifest?" not in link]
    manifests = [link for link in links if "/manifest?" in link]
    assert [link.split("?")[0].rsplit("/", 1)[1] for link in files] == ["csv", "json", "ndjson"]
    through = AuditEvent.objects.filter(organization=trail["acme"]).count()
    assert all(f"through={through}" in link and "object_type=team" in link for link in links)
    answer = client.get(files[1])
    (tmp_path / "e.json").write_bytes(b"".join(answer.streaming_content))  # type: ignore[attr-defined]
    (tmp_path / "m.json").write_text(json.dumps(client.get(manifests[1]).json()))
    check = export_verify(tmp_path / "e.json", tmp_path / "m.json")
    assert (
        check.ok
        and check.rows
        == AuditEvent.objects.filter(
            organization=trail["acme"], object_type="team", seq__lte=through
        ).count()
    )
    # A viewer has no audit page and no export.
    viewer = person("viewer2")
    membership_grant(actor=OPERATOR, organization=trail["acme"], user=viewer, role=Role.VIEWER)
    client.force_login(viewer)
    assert client.get(files[0]).status_code == 403


def test_a_manifest_that_is_not_one_fails_without_a_traceback(
    trail: dict[str, Any], tmp_path: Path
) -> None:
    path, manifest_path = _export(tmp_path, "ndjson")
    manifest = json.loads(manifest_path.read_text())
    for broken in ({**manifest, "organization": "acme"}, ["not", "a", "manifest"]):
        manifest_path.write_text(json.dumps(broken))
        with pytest.raises(CommandError, match="FAILED:\n  manifest: "):
            call_command("audit", "verify-export", str(path), str(manifest_path))
    manifest_path.write_text("{not json")
    assert export_verify(path, manifest_path).problems[0].startswith("manifest: ")


def test_an_export_signed_by_a_key_revoked_since_does_not_verify(
    trail: dict[str, Any], tmp_path: Path
) -> None:
    path, manifest_path = _export(tmp_path, "ndjson")
    key = SigningKey.objects.get(organization=trail["acme"], status="active")
    assert export_verify(path, manifest_path).ok
    call_command(
        "signing_key",
        "revoke",
        "--org",
        "acme",
        key.key_id,
        "--reason",
        "leaked",
        stdout=StringIO(),
    )
    for given in (None, key.public_key):  # the server's word, or the key passed by hand
        problems = export_verify(path, manifest_path, public_key=given).problems
        assert len(problems) == 1 and f"key {key.key_id} was revoked at" in problems[0]
    # A manifest naming another key, checked with the revoked key by hand: still refused.
    claimed = json.loads(manifest_path.read_text())
    claimed["key_id"] = "0" * 16
    manifest_path.write_text(json.dumps(claimed))
    problems = export_verify(path, manifest_path, public_key=key.public_key).problems
    assert any(f"key {key.key_id} was revoked at" in p for p in problems)
    # Exported again, the active key signs it.
    (tmp_path / "again").mkdir()
    again, again_manifest = _export(tmp_path / "again", "ndjson")
    assert export_verify(again, again_manifest).ok
