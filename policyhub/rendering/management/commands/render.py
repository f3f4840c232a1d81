"""`render --org ORG (--team PATH | --all) --out DIR [--codex-version V]`: write the files Codex
reads, as Codex V reads them (profile tables before 0.134, profile files from 0.134). A V newer
than the newest measured release is rendered as for that release, with a warning."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policyhub.accounts.cli import organization_arg
from policyhub.policies.selectors import org_policy
from policyhub.policies.window import unmeasured
from policyhub.rendering.render import REVISION_RE, PolicyInvalid, RenderedTeam, render_team
from providers.codex_files import PROFILE_DIR
from providers.codex_versions import capabilities, parse_version


class Command(BaseCommand):
    help = "Render requirements.toml, config.toml and profile files for one team or all teams."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True)
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--team", help="slug path of the team, e.g. platform/ci")
        which.add_argument(
            "--all", action="store_true", help="every team, one folder per slug path"
        )
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument(
            "--codex-version",
            help="the Codex version to render for (default: the newest of the organisation's "
            "support window)",
        )
        parser.add_argument(
            "--revision",
            default="unpublished",
            help='revision named in the file headers (files not published are "unpublished")',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_arg(options["org"])
        if not REVISION_RE.match(options["revision"]):
            raise CommandError("--revision must be letters, digits, '.', '_' or '-'")
        policy = org_policy(org)
        try:
            target = capabilities(options["codex_version"] or policy.codex.max_version)
        except ValueError as exc:
            raise CommandError(f"--codex-version: {exc}") from None
        window = policy.codex
        try:
            inside = (
                parse_version(window.min_version)
                <= target.version
                <= parse_version(window.max_version)
            )
        except ValueError:
            inside = False
        if not inside:
            self.stderr.write(
                f"note: Codex {target.label} is outside the support window of {org.slug} "
                f"({window.min_version} to {window.max_version}); checked for it alone"
            )
        not_measured = unmeasured(target.version)
        if not_measured:
            self.stderr.write(f"warning: {not_measured}")
        paths = sorted(policy.teams) if options["all"] else [options["team"]]
        missing = [p for p in paths if p not in policy.teams]
        if missing:
            raise CommandError(
                f"no team {missing[0]!r} in {org.slug} (teams: {', '.join(sorted(policy.teams))})"
            )
        rendered, failures = [], []
        for path in paths:
            try:
                rendered.append(
                    render_team(policy, path, revision=options["revision"], target=target)
                )
            except PolicyInvalid as exc:
                failures += [f"{path}: {issue}" for issue in exc.issues]
        if failures:
            # All or nothing: no team's files are written while any team is invalid.
            raise CommandError("\n".join(["the policy has errors; nothing was written", *failures]))
        out: Path = options["out"]
        for team in rendered:
            self._write(out / team.path if options["all"] else out, team)
            for issue in team.validation.warnings:
                self.stderr.write(f"{team.path}: {issue}")
        self.stdout.write(f"Rendered {len(rendered)} team(s) for Codex {target.label} into {out}.")

    @staticmethod
    def _write(folder: Path, team: RenderedTeam) -> None:
        profiles = folder / PROFILE_DIR
        if profiles.is_dir():
            # Profiles the policy no longer has must not linger beside the fresh ones.
            for stale in profiles.glob("*.config.toml"):
                if f"{PROFILE_DIR}/{stale.name}" not in team.files:
                    stale.unlink()
        for name, body in team.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
