"""A team's current release packaged for hands other than ours: a macOS configuration profile
for MDM (Jamf, Intune, Kandji) and a zip of the files for manual or GitOps use."""

from __future__ import annotations

import base64
import io
import plistlib
import uuid
import zipfile

from policyhub.releases.models import Release
from providers.codex_files import CONFIG, REQUIREMENTS

CODEX_DOMAIN = "com.openai.codex"
# Stable identifiers: re-exporting a team's profile replaces the installed one instead of adding
# a second profile next to it.
_NAMESPACE = uuid.UUID("9a4f3f7e-52a1-4c55-9d43-6f1c1f0e2b10")


def mobileconfig(release: Release) -> bytes:
    """A configuration profile whose payload sets Codex's managed preferences.

    On macOS `config_toml_base64` is Codex's managed config, the highest config layer (docs/codex.md):
    the defaults become fixed, as in `managed_config.toml`. Profile files cannot travel this way.
    """
    label = f"{release.organization.slug}/{release.team_path}"
    identifier = f"policyhub.{release.organization.slug}.{release.team_path.replace('/', '.')}"
    payload = {
        "PayloadType": CODEX_DOMAIN,
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.codex",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"{label}:codex")).upper(),
        "PayloadDisplayName": f"Codex policy for {label}",
        "requirements_toml_base64": _b64(release.files.get(REQUIREMENTS, "")),
        "config_toml_base64": _b64(release.files.get(CONFIG, "")),
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, label)).upper(),
        "PayloadDisplayName": f"PolicyHub: Codex for {label}",
        "PayloadDescription": (
            f"Codex requirements and managed configuration of {label}, revision "
            f"{release.revision} (signed manifest sha256 {release.etag})."
        ),
        "PayloadOrganization": release.organization.name,
        "PayloadScope": "System",
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def files_zip(release: Release) -> bytes:
    """Every file of the release under its relative path, plus the signed manifest and its
    signature, so the files can be verified after download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(release.files):
            archive.writestr(_entry(name), release.files[name])
        archive.writestr(_entry("manifest.json"), release.manifest)
        archive.writestr(
            _entry("manifest.sig"), f"{release.signing_key.key_id} {release.signature}\n"
        )
    return buffer.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed timestamp: the same release always gives the same bytes.
    info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
