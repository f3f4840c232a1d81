"""Enrolment, sync and clean-up of the Codex files: the agent's workflow over the other modules."""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import random
import re
import secrets
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policyhub_agent import __version__, device, files, state, verify
from policyhub_agent.client import Client, normalize_server, valid_etag
from policyhub_agent.errors import (
    AgentError,
    MalformedAnswer,
    NotEnrolled,
    ServerError,
    UnknownSigningKey,
    UsageError,
    VerificationError,
)
from policyhub_agent.state import State

# Unreserved URL characters only: the credential goes verbatim into the config-server URL path.
CREDENTIAL_RE = re.compile(r"phd_[A-Za-z0-9._~-]{1,256}")
MAX_STATUS_ERRORS = 20
MAX_STATUS_ERROR_CHARS = 2000
NATIVE_CHANNEL_HEADER = (
    "# Added by policyhub-agent: Codex fetches this team's policy from PolicyHub directly.\n"
    "# The URL holds this device's read-only fetch credential for that policy.\n"
)


@dataclass
class Output:
    """Where progress lines and warnings go (stdout and stderr in the CLI)."""

    info: Callable[[str], None]
    warn: Callable[[str], None]


def native_channel_url(server: str, credential: str) -> str:
    return f"{server}/config-server/{credential}"


def new_credential() -> str:
    """A device credential as the server makes them: 256 random bits, URL-safe."""
    return "phd_" + secrets.token_urlsafe(32)


def fetch_credential(credential: str) -> str:
    """The fetch-only credential of a device credential, derived as the server derives it (an
    HMAC keyed by the credential): it opens the native channel's fetch and nothing else."""
    mac = hmac.digest(credential.encode(), b"policyhub fetch credential", "sha256")
    return "phf_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _toml_string(value: str) -> str:
    """A TOML basic string (the values are ASCII URLs; escaping keeps any value one string)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def requirements_text(text: str, *, server: str, credential: str, native: bool) -> str:
    """The release's requirements, plus Codex's native channel when it is on and the server https.

    The table is appended as text so the signed bytes stay as they are above it; the result is
    parsed back to prove the append changed no key and set exactly the URL.
    """
    if not native or not server.startswith("https://"):
        return text  # Codex accepts only https config servers
    original = tomllib.loads(text)
    if "config_server" in original:
        raise VerificationError(
            "the release's requirements.toml already defines config_server; refusing to add the "
            "native channel (enrol with --no-native-channel to take the release as it is)"
        )
    url = native_channel_url(server, credential)
    separator = "" if not text or text.endswith("\n") else "\n"
    result = f"{text}{separator}\n{NATIVE_CHANNEL_HEADER}[config_server]\nbase_url = {_toml_string(url)}\n"
    parsed = tomllib.loads(result)
    channel = parsed.pop("config_server", None)
    if parsed != original or channel != {"base_url": url}:
        raise VerificationError("adding [config_server] would change the release's requirements")
    return result


def _native(current: State, bundle: verify.Bundle, codex: verify.Version | None) -> bool:
    """Whether requirements.toml gets Codex's native channel: asked for at enrolment, an https
    server (the only kind Codex accepts), and a Codex the signed manifest says fetches, no newer
    than the signed end of measurement (verify.Bundle.native_channel)."""
    return (
        current.native_channel
        and current.server.startswith("https://")
        and bundle.native_channel(codex)
    )


def _targets(
    layout: files.Layout,
    current: State,
    bundle: verify.Bundle,
    codex_home: Path,
    codex: verify.Version | None,
) -> dict[Path, bytes]:
    """Every file the bundle puts on this machine, as bytes."""
    requirements = requirements_text(
        bundle.files[verify.REQUIREMENTS],
        server=current.server,
        # A server from before fetch credentials knows only the device credential.
        credential=current.fetch_credential or current.credential,
        native=_native(current, bundle, codex),
    )
    targets = {
        layout.etc_dir / verify.REQUIREMENTS: requirements.encode(),
        layout.etc_dir / verify.CONFIG: bundle.files[verify.CONFIG].encode(),
    }
    if verify.MANAGED_CONFIG in bundle.files:
        # The highest layer, read by every Codex version: the pins older versions would ignore.
        targets[layout.etc_dir / verify.MANAGED_CONFIG] = bundle.files[
            verify.MANAGED_CONFIG
        ].encode()
    for name, text in sorted(bundle.files.items()):
        profile = verify.profile_name(name)
        if profile is not None:
            targets[codex_home / f"{profile}.config.toml"] = text.encode()
    return targets


def _apply(
    layout: files.Layout,
    current: State,
    bundle: verify.Bundle,
    codex_home: Path,
    codex: verify.Version | None,
    out: Output,
) -> list[str]:
    """Put the verified bundle's files in place; returns what changed on disk.

    All files are staged (written and fsynced next to their targets) before the first rename,
    so a failure while writing leaves every previous file as it was.
    """
    targets = _targets(layout, current, bundle, codex_home, codex)
    pending = {path: data for path, data in targets.items() if not files.is_current(path, data)}
    owned = set(current.written)
    wanted = {str(path) for path in targets}
    created: list[str] = []
    try:
        for directory in sorted({path.parent for path in pending}):
            files.ensure_dir(directory, created)
    finally:
        current.created_dirs += created
    for path in pending:
        if str(path) not in owned and str(path) not in current.backups:
            saved = files.backup(path)  # someone else's file: put it back when we let go
            if saved is not None:
                current.backups[str(path)] = saved
    staged: list[files.Staged] = []
    try:
        for path, data in pending.items():
            staged.append(files.stage(path, data, files.PUBLIC_MODE))
        # Own the paths before they change, so a crash right after still lets uninstall clean up.
        current.written = sorted(owned | wanted)
        state.save(layout.state_file, current)
    except BaseException:
        files.discard(staged)
        raise
    files.commit(staged)
    current.native_written = _native(current, bundle, codex)
    changed = []
    for path in pending:
        out.info(f"wrote {path}")
        changed.append(str(path))
    for stale in sorted(owned - wanted):
        out.info(f"{files.release(Path(stale), current.backups)} {stale}")
        changed.append(stale)
    current.written = sorted(wanted)
    return changed


def _verified(
    raw: bytes, current: State, client: Client, out: Output
) -> tuple[verify.Bundle, dict[str, str]]:
    """The verified bundle and the keys to pin once it is applied.

    Before a new bundle is trusted, the organisation's keys and revocations are fetched
    (`_keys_refreshed`): a revoked key is dropped from the pinned keys at once, and a bundle it
    signed is refused; keys endorsed through trusted, unrevoked keys are pinned once the bundle
    is in place. When the key list cannot be had, a bundle signed by a pinned key is still
    verified with what this machine holds, and any other fails as before.
    """
    update, failure = _keys_refreshed(current, client, out)
    pinned = update.pinned if update is not None else current.keys
    try:
        return verify.verify_bundle(raw, pinned, current.organization), pinned
    except UnknownSigningKey as exc:
        unknown = exc.key_id
    if unknown in current.revoked_keys:
        raise VerificationError(
            f"the bundle is signed by key {unknown}, which the organisation revoked at "
            f"{current.revoked_keys[unknown]}: it is trusted for nothing"
        )
    if failure is not None:
        raise failure
    why = (update.reasons if update else {}).get(unknown, "the server does not list it")
    stranded = not pinned or "revoked" in why
    raise VerificationError(
        f"the bundle is signed by key {unknown}, which is not pinned and not trusted: {why}"
        + ("; enrol this device again to trust the organisation's current key" if stranded else "")
    )


def _keys_refreshed(
    current: State, client: Client, out: Output
) -> tuple[verify.KeyUpdate | None, AgentError | None]:
    """The organisation's keys and revocations applied to `current` (revoked keys dropped and
    recorded at once, so a refused bundle does not undo it), or why they could not be had."""
    try:
        update = verify.key_update(
            client.key_answer(),
            current.keys,
            current.revoked_keys,
            current.revocations_issued_at,
            current.organization,
            datetime.now(UTC),
        )
    except AgentError as exc:
        out.warn(f"warning: the signing keys could not be refreshed: {exc}")
        return None, exc
    _revocations_note(current, update, out)
    current.keys = {k: v for k, v in current.keys.items() if k not in update.revoked}
    current.revoked_keys, current.revocations_issued_at = update.revoked, update.issued_at
    return update, None


def _revocations_note(current: State, update: verify.KeyUpdate, out: Output) -> None:
    for why in update.ignored:
        out.warn(f"warning: ignored revocation data from the server: {why}")
    for key_id in sorted(set(current.keys) & set(update.revoked)):
        out.warn(
            f"warning: signing key {key_id} was revoked by the organisation at "
            f"{update.revoked[key_id]}; this machine no longer trusts it"
        )


def _pull(
    layout: files.Layout,
    current: State,
    client: Client,
    codex_version: str | None,
    out: Output,
) -> tuple[str, list[str]]:
    """Fetch, verify and apply; (the result line, notes for the server)."""
    codex_home = layout.codex_home(current.codex_home)
    codex = verify.parse_version(codex_version)
    last_good = files.read_bytes(layout.last_good_file)
    if _fetch_credential_ensured(layout, current, client, out) and last_good is not None:
        # The old credential in requirements.toml stopped working: write the fetch credential
        # there now, before anything else can fail, so Codex's own fetch keeps working.
        with contextlib.suppress(VerificationError):
            bundle = verify.verify_bundle(last_good, current.keys, current.organization)
            _apply(layout, current, bundle, codex_home, codex, out)
    etag = current.etag if last_good is not None else None
    response = client.bundle(etag=etag, codex_version=codex_version)
    if response.status == 304 and last_good is not None:
        try:
            bundle = verify.verify_bundle(last_good, current.keys, current.organization)
        except VerificationError as exc:
            out.warn(f"the last known good bundle no longer verifies ({exc}); downloading again")
            response = client.bundle(etag=None, codex_version=codex_version)
        else:
            warnings = _check_versions(current, bundle, codex, out)
            restored = _apply(layout, current, bundle, codex_home, codex, out)
            current.warnings = warnings
            current.applied_signed_at = bundle.signed_at
            current.codex_home = str(codex_home)
            notes = [
                f"restored {path}: it differed from revision {bundle.revision}" for path in restored
            ]
            return f"revision {bundle.revision} unchanged", notes
    if response.status == 304:
        raise AgentError("bundle download: the server answered 304 to a request without an etag")
    if response.status == 404:
        return f"no release is published for team {current.team} yet; nothing applied", []
    bundle, pinned = _verified(response.body, current, client, out)
    moved = _check_order(current, bundle, client, pinned)
    warnings = _check_versions(current, bundle, codex, out)
    _apply(layout, current, bundle, codex_home, codex, out)
    current.warnings = warnings
    # Only now that every file is in place does this bundle become the last known good one.
    files.write_atomic(layout.last_good_file, response.body, files.PRIVATE_MODE)
    # A team's revision numbers one release each: the same number is the same release.
    unchanged = (bundle.revision, bundle.team) == (current.applied_revision, current.team)
    current.keys = pinned
    current.etag = valid_etag(response.headers.get("etag"))
    current.applied_revision = bundle.revision
    current.applied_signed_at = bundle.signed_at
    current.high_water = {**_high_water(current), bundle.team: bundle.revision}
    if moved is not None:
        current.assignment = moved.serial
    current.team = bundle.team
    current.codex_home = str(codex_home)
    return f"revision {bundle.revision} {'unchanged' if unchanged else 'applied'}", []


def _high_water(current: State) -> dict[str, int]:
    """The highest revision applied per team (a state written before 0.3.1 knows only the
    revision it applied last, of the team it was in)."""
    marks = dict(current.high_water)
    if current.applied_revision is not None and current.team not in marks:
        marks[current.team] = current.applied_revision
    return marks


def _check_order(
    current: State, bundle: verify.Bundle, client: Client, pinned: dict[str, str]
) -> verify.Assignment | None:
    """Refuse what would roll this machine back: a bundle of another team unless the server
    proves the move with a signed assignment newer than any this machine saw, and a revision
    lower than one it already applied for that team (a rollback is published as a new, higher
    revision, so only a replay or a tampered answer goes back). Returns the move, if one."""
    moved = None
    if bundle.team != current.team:
        moved = verify.verify_assignment(
            client.assignment(), pinned, current.organization, current.device_id
        )
        if moved.team != bundle.team:
            raise VerificationError(
                f"revision {bundle.revision} is for team {bundle.team}, but the server assigns "
                f"this machine to team {moved.team}"
            )
        if current.assignment is not None and moved.serial <= current.assignment:
            raise VerificationError(
                f"the server's assignment to team {moved.team} (number {moved.serial}) is not "
                f"newer than the one this machine follows (number {current.assignment}): a "
                "replayed move is refused"
            )
    applied = _high_water(current).get(bundle.team)
    if applied is not None and bundle.revision < applied:
        raise VerificationError(
            f"revision {bundle.revision} of team {bundle.team} is older than revision {applied}, "
            "which this machine already applied: a downgrade is refused (a rollback is published "
            "as a new revision)"
        )
    return moved


def _check_versions(
    current: State, bundle: verify.Bundle, codex: verify.Version | None, out: Output
) -> list[str]:
    """Files made for other Codex versions than this machine's: refused inside the signed
    window (the server has the right set, so this one is a replay or a mistake); outside it the
    nearest set is all there is, applied with a warning (fleet status flags the machine). A
    Codex newer than the signed end of measurement gets the files made for that release, with a
    warning and without the native channel. Returns the warnings, which `status` shows."""
    if codex is None:
        return []
    shown = ".".join(map(str, codex))
    warnings = []
    if not bundle.is_for(codex):
        if bundle.in_window(codex):
            raise VerificationError(
                f"revision {bundle.revision} holds the files for other Codex versions than this "
                f"machine's {shown}, which the organisation's window includes"
            )
        warnings.append(
            f"warning: Codex {shown} is outside the versions revision {bundle.revision} was "
            "made for; its nearest files were applied"
        )
    if not bundle.measured(codex):
        measured = ".".join(map(str, bundle.measured_until))
        dropped = _native(current, bundle, bundle.measured_until)  # there, it would be added
        warnings.append(
            f"warning: Codex {shown} is newer than {measured}, the newest release PolicyHub had "
            f"measured when revision {bundle.revision} was made: the files made for {measured} "
            "were applied"
            + (
                "; Codex's native channel is left out (Codex reads these files itself)"
                if dropped
                else ""
            )
        )
    for warning in warnings:
        out.warn(warning)
    return warnings


def _plain(text: str) -> str:
    """One line without control characters: the server stores and shows these verbatim."""
    return "".join(c if c.isprintable() else " " for c in " ".join(text.split()))


def _post_status(
    client: Client, current: State, codex_version: str | None, errors: list[str], out: Output
) -> None:
    """Tell the server what this device runs; a failure here is a warning, not a failed sync."""
    body: dict[str, Any] = {
        "applied_revision": current.applied_revision,
        "codex_version": codex_version,
        "os": device.os_description(),
        "agent_version": __version__,
        "errors": [_plain(error)[:MAX_STATUS_ERROR_CHARS] for error in errors[:MAX_STATUS_ERRORS]],
    }
    try:
        client.post_status(body)
    except AgentError as exc:
        out.warn(f"warning: {exc}")


def run_sync(layout: files.Layout, current: State, out: Output) -> str:
    """One sync with the lock held; returns the result line, raises AgentError on failure."""
    codex_version = device.codex_version(current.codex_bin)
    client = Client(current.server, current.credential, current.ca_bundle)
    current.last_attempt = state.now()
    try:
        try:
            message, notes = _pull(layout, current, client, codex_version, out)
        except OSError as exc:  # a file the agent must read or replace is out of its reach
            where = f" {exc.filename}" if exc.filename else ""
            raise AgentError(f"cannot access{where}: {exc.strerror or exc}") from exc
        except (AgentError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a hostile answer no check foresaw: an error, not a traceback
            raise MalformedAnswer(
                f"sync failed on something unexpected ({type(exc).__name__}: {exc})"[:500]
            ) from exc
    except AgentError as exc:
        current.last_error = str(exc)
        state.save(layout.state_file, current)
        if isinstance(exc, VerificationError | MalformedAnswer):
            # The admin should learn that this device refused what the server sent.
            _post_status(client, current, codex_version, [f"bundle refused: {exc}"], out)
        raise
    current.last_error = None
    current.last_sync = current.last_attempt
    state.save(layout.state_file, current)
    _post_status(client, current, codex_version, notes, out)
    return message


def _fetch_credential_ensured(
    layout: files.Layout, current: State, client: Client, out: Output
) -> bool:
    """A device enrolled before fetch credentials existed carries its credential in the
    world-readable requirements.toml: replace the credential with a new one (which the server
    pairs with a fetch credential), so the copy in that file opens nothing from now on. True
    when the credential changed.

    The new credential is kept until the server has either taken it or refused it for good: if
    the answer is lost (a broken connection, a proxy's 502 after the commit), the old credential
    is refused at a later sync and the kept one is taken. Only a refusal of the credential
    itself (400) drops it. Nothing here stops the sync: the bundle is fetched either way."""
    if current.fetch_credential is not None and current.pending_credential is None:
        return False
    if current.pending_credential is None:
        current.pending_credential = new_credential()
        state.save(layout.state_file, current)
    new = current.pending_credential
    try:
        answer = client.rotate_credential(new)
    except ServerError as exc:
        if exc.status == 401:
            # The old credential is refused: the server took the new one at an earlier attempt
            # (or revoked the device, which the bundle download will say).
            client.use_credential(new)
        else:
            if exc.status == 400:
                current.pending_credential = None
                state.save(layout.state_file, current)
            if exc.status != 404:  # a server from before fetch credentials: nothing to say
                out.warn(f"warning: the credential could not be replaced yet: {exc}")
            return False
    except AgentError as exc:  # the network: the kept credential is tried again next time
        out.warn(f"warning: the credential could not be replaced yet: {exc}")
        return False
    else:
        if answer.get("fetch_credential") != fetch_credential(new):
            raise MalformedAnswer("credential rotation: the server's fetch credential is not ours")
    current.credential, current.fetch_credential = new, fetch_credential(new)
    current.pending_credential = None
    state.save(layout.state_file, current)
    out.info("replaced this device's credential; Codex's native channel now uses a fetch-only one")
    return True


def sync(layout: files.Layout, jitter: float, out: Output) -> str:
    """`sync`: wait up to `jitter` seconds (spreads a fleet's requests), then sync under the lock."""
    if not layout.state_file.exists():
        raise NotEnrolled()
    if jitter > 0:
        time.sleep(random.uniform(0, jitter))
    with files.locked(layout.lock_file):
        current = state.load(layout.state_file)
        if current is None:
            raise NotEnrolled()
        return run_sync(layout, current, out)


def _enrolment(answer: dict[str, Any]) -> tuple[str, str, str, str, dict[str, str]]:
    """(device id, credential, organisation, team, keys) from the server's answer, checked."""
    device_id, credential = answer.get("device_id"), answer.get("credential")
    organization, team = answer.get("organization"), answer.get("team")
    try:
        uuid.UUID(str(device_id))
    except ValueError:
        raise AgentError("enrolment: the server's answer has no valid device_id") from None
    if not isinstance(credential, str) or not CREDENTIAL_RE.fullmatch(credential):
        raise AgentError("enrolment: the server's answer has no valid credential")
    if not isinstance(organization, str) or not organization:
        raise AgentError("enrolment: the server's answer names no organisation")
    if not isinstance(team, str) or not team:
        raise AgentError("enrolment: the server's answer names no team")
    try:
        keys = {key.key_id: key.public_key for key in verify.parse_keys(answer.get("keys"))}
    except VerificationError as exc:
        raise AgentError(f"enrolment: the server's signing keys are malformed: {exc}") from exc
    return str(device_id), credential, organization, team, keys


def _enrolled_fetch_credential(answer: dict[str, Any], credential: str) -> str | None:
    """The fetch credential the server paired with the credential (a server from before fetch
    credentials names none: then the first sync asks for one by rotating the credential)."""
    fetch = answer.get("fetch_credential")
    if fetch is None:
        return None
    if not isinstance(fetch, str) or fetch != fetch_credential(credential):
        raise AgentError("enrolment: the server's fetch credential does not match the credential")
    return fetch


def _enrolled_serial(value: object) -> int | None:
    """The number of the team assignment the device enrolled with (servers before 0.3.1 send
    none: then the first signed move is taken)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= verify.MAX_SERIAL:
        return None
    return value


def _enrolled_keys(
    answer: dict[str, Any], keys: dict[str, str], organization: str, out: Output
) -> verify.KeyUpdate:
    """The enrolment's keys (pinned as the server gave them) with its revocations: a genuine
    list, signed by one of those keys, is kept, so no key it names is ever trusted later."""
    try:
        update = verify.key_update(answer, keys, {}, None, organization, datetime.now(UTC))
    except VerificationError as exc:
        raise AgentError(f"enrolment: the server's signing keys are malformed: {exc}") from exc
    for why in update.ignored:
        out.warn(f"warning: ignored revocation data from the server: {why}")
    return update


def enroll(
    layout: files.Layout,
    *,
    server: str,
    token: str,
    ca_bundle: str | None,
    native: bool,
    codex_bin: str | None,
    out: Output,
) -> str:
    """`enroll`: trade the token for a credential, store it, then run the first sync."""
    server = normalize_server(server)
    if not token.strip():
        raise UsageError("--token is empty")
    if ca_bundle is not None:
        ca_bundle = os.path.abspath(ca_bundle)
        if not os.path.isfile(ca_bundle):
            raise UsageError(f"--ca-bundle {ca_bundle} is not a file")
    if codex_bin is not None and os.sep in codex_bin:
        codex_bin = os.path.abspath(codex_bin)
    # The state directory must be writable before the token is spent on the server.
    created: list[str] = []
    ensure_state_dir(layout, created)
    try:
        with files.locked(layout.lock_file):
            return _enroll_locked(layout, server, token, ca_bundle, native, codex_bin, created, out)
    finally:
        if not layout.state_file.exists():  # the enrolment failed: leave no trace
            layout.lock_file.unlink(missing_ok=True)
            files.remove_dirs(created)


def _enroll_locked(
    layout: files.Layout,
    server: str,
    token: str,
    ca_bundle: str | None,
    native: bool,
    codex_bin: str | None,
    created: list[str],
    out: Output,
) -> str:
    try:
        previous = state.load(layout.state_file)
    except AgentError as exc:
        out.warn(f"warning: replacing the damaged state: {exc}")
        previous = None
    client = Client(server, None, ca_bundle)
    answer = client.enroll(
        token=token,
        hostname=device.hostname(),
        os_name=device.os_description(),
        codex_version=device.codex_version(codex_bin),
    )
    device_id, credential, organization, team, keys = _enrolment(answer)
    enrolled = _enrolled_keys(answer, keys, organization, out)
    fetch = _enrolled_fetch_credential(answer, credential)
    current = State(
        server=server,
        device_id=device_id,
        credential=credential,
        organization=organization,
        team=team,
        keys=enrolled.pinned,
        revoked_keys=enrolled.revoked,
        revocations_issued_at=enrolled.issued_at,
        ca_bundle=ca_bundle,
        native_channel=native,
        codex_bin=codex_bin,
        codex_home=str(layout.codex_home()),
        enrolled_at=state.now(),
        # What an earlier enrolment wrote stays owned, so sync and uninstall still clean it up.
        written=previous.written if previous else [],
        backups=previous.backups if previous else {},
        created_dirs=(previous.created_dirs if previous else []) + created,
        assignment=_enrolled_serial(answer.get("assignment")),
        fetch_credential=fetch,
    )
    layout.last_good_file.unlink(missing_ok=True)
    state.save(layout.state_file, current)
    out.info(f"enrolled device {device_id} in organisation {organization}, team {team}")
    if not keys:
        out.warn(
            "warning: the server pinned no signing key (the organisation has published nothing "
            "yet); no release can be verified until this device enrols again"
        )
    if native and not server.startswith("https://"):
        out.info("native Codex channel not configured: Codex only accepts https config servers")
    return run_sync(layout, current, out)


def ensure_state_dir(layout: files.Layout, created: list[str]) -> None:
    """The state directory, private to its owner (state.json holds the credential)."""
    files.ensure_dir(layout.state_dir.parent, created)
    files.ensure_dir(layout.state_dir, created, 0o700)


def forget(layout: files.Layout, current: State | None, out: Output) -> list[str]:
    """Give back every Codex file the agent wrote and delete its own records; the dirs it made."""
    created: list[str] = []
    if current is not None:
        for path in current.written:
            out.info(f"{files.release(Path(path), current.backups)} {path}")
        # Temp files a killed run left next to its targets are the agent's too.
        for directory in {Path(path).parent for path in current.written}:
            for temp in directory.glob(f".*{files.TEMP_SUFFIX}"):
                temp.unlink(missing_ok=True)
        created = current.created_dirs
    for own in (layout.last_good_file, layout.state_file, layout.hook_file, layout.lock_file):
        if own.exists():
            own.unlink()
            out.info(f"removed {own}")
    return created
