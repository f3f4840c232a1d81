"""Policy as code: an organisation's whole policy as one TOML document, and the plan between two.

    [organization]                      slug, name
    [providers.<name>]                  kind, provider_id, <kind fields>, [capabilities]
    [requirements] [config]             the organisation root node
    [profiles.<name>] [mcp_servers.<name>]
    [teams."<slug path>"]               name, and the same four sections per team
    [codex]                             min_version, max_version, accept_unenforced, managed_pins

`parse` refuses a document whole, with field paths; `dump` is deterministic and
`parse(dump(p)) == p`; `plan` lists every create, change and delete between two policies.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from policyhub.errors import ApplicationError
from policyhub.policies import limits
from policyhub.policies.checkers import NAME_RE, check_str
from policyhub.policies.domain import CodexWindow, Endpoint, Json, Node, OrgPolicy, TeamSpec
from policyhub.policies.tomlio import canonical, toml_text
from providers import KINDS
from providers.base import Issue

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NODE_SECTIONS = ("requirements", "config", "profiles", "mcp_servers")
MAX_TEAM_DEPTH = 16


class DocumentInvalid(ApplicationError):
    """The document cannot be applied; every issue carries its field path."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("the document is invalid", issues)


# --- field paths ---------------------------------------------------------------------------------


def document_path(issue: Issue) -> Issue:
    """A finding at its path in the document: validation reports a team's findings relative
    to the team's node (`config.model`, node `platform/ci`), the document has them at
    `teams.platform/ci.config.model`; text that is not TOML at all is the `document` field."""
    path = issue.path or "document"
    node = issue.node
    if node and not path.startswith("teams.") and all(SLUG_RE.match(p) for p in node.split("/")):
        path = f"teams.{node}.{path}"
    return Issue(issue.severity, path, issue.message, node)


@contextmanager
def in_document_paths() -> Iterator[None]:
    """Refusals raised inside name their fields by document path (for the API, whose clients
    edit the document or one object of it)."""
    try:
        yield
    except ApplicationError as refused:
        refused.issues = [document_path(issue) for issue in refused.issues]
        raise


# --- parse ---------------------------------------------------------------------------------------


def parse(text: str) -> OrgPolicy:
    """Parse a policy document; raises DocumentInvalid naming every structural problem."""
    return from_dict(toml_loads(text))


def toml_loads(text: str) -> dict[str, Any]:
    """TOML text as data, within the document's size and nesting bounds; DocumentInvalid with
    the line, column and table of a syntax error."""
    if len(text) > limits.DOCUMENT_CHARS:
        raise DocumentInvalid(
            [
                Issue(
                    "error",
                    "document",
                    f"is {len(text):,} characters long; at most {limits.DOCUMENT_CHARS:,}",
                )
            ]
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DocumentInvalid([_syntax_error(text, str(exc))]) from None
    except RecursionError:  # the parser recurses once per nested array or inline table
        raise DocumentInvalid(
            [
                Issue(
                    "error", "document", f"nests arrays or tables deeper than {limits.DEPTH} levels"
                )
            ]
        ) from None


_AT_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")
_HEADER = re.compile(r"^\[\[?\s*([^\]#]+?)\s*\]\]?\s*(?:#.*)?$")


def _syntax_error(text: str, message: str) -> Issue:
    """A TOML syntax error at its line and column, and the table it is in: the field path is
    that table's, and the message says where in it."""
    found = _AT_LINE.search(message)
    if found is None:  # at the end of the document
        return Issue("error", "document", f"is not valid TOML: {message}")
    line = int(found.group(1))
    table = ""
    # Lines as TOML counts them (only "\n" ends one); a header starts its line (dump writes
    # them so), which keeps an indented array element like `  ["git", "push"]` from reading as one.
    for previous in reversed(text.split("\n")[: line - 1]):
        if header := _HEADER.match(previous):
            table = header.group(1).replace('"', "").replace("'", "")
            break
    where = f"in [{table}]" if table else "before the first table"
    reason = _AT_LINE.sub("", message).strip()
    return Issue(
        "error",
        table or "document",
        f"is not valid TOML: {reason} at line {line}, column {found.group(2)} ({where})",
    )


def from_dict(raw: Mapping[str, Any]) -> OrgPolicy:
    """A policy from the document's tables as data (TOML parsed, or the API's JSON): the same
    checks and field paths whichever way it came."""
    if too_much := limits.document_issues(raw):
        raise DocumentInvalid(too_much)
    issues: list[Issue] = []
    known = {"organization", "providers", "teams", "codex", *NODE_SECTIONS}
    issues += [Issue("error", k, "is not a known section") for k in raw if k not in known]

    org = _table(raw, "organization", issues)
    slug, name = org.get("slug"), org.get("name")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        issues.append(
            Issue("error", "organization.slug", "must be lowercase letters, digits and '-'")
        )
    issues += check_str(max_len=200, prose=True)(name, "organization.name")
    issues += [
        Issue("error", f"organization.{k}", "is not a known key")
        for k in org
        if k not in ("slug", "name")
    ]

    endpoints = {}
    for ep_name, ep in _table(raw, "providers", issues).items():
        where = f"providers.{ep_name}"
        if not isinstance(ep, Mapping):
            issues.append(Issue("error", where, "must be a table"))
            continue
        kind = ep.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            issues.append(Issue("error", f"{where}.kind", f"must be one of {', '.join(KINDS)}"))
            continue
        settings = {k: v for k, v in ep.items() if k not in ("kind", "provider_id", "capabilities")}
        provider_id = ep.get(
            "provider_id", KINDS[kind].builtin_id or KINDS[kind].default_provider_id
        )
        if not isinstance(provider_id, str):
            issues.append(Issue("error", f"{where}.provider_id", "must be a string"))
            continue
        caps = ep.get("capabilities", {})
        if not isinstance(caps, Mapping):
            issues.append(Issue("error", f"{where}.capabilities", "must be a table"))
            continue
        endpoints[ep_name] = Endpoint(ep_name, kind, provider_id, settings, dict(caps))

    root = _node(raw, "", issues)
    teams = {}
    for path, team in _table(raw, "teams", issues).items():
        where = f"teams.{path}"
        parts = path.split("/")
        if len(parts) > MAX_TEAM_DEPTH or not all(SLUG_RE.match(p) for p in parts):
            issues.append(
                Issue(
                    "error",
                    where,
                    "must be a path of slugs (lowercase letters, digits, '-') joined by '/'",
                )
            )
            continue
        if not isinstance(team, Mapping):
            issues.append(Issue("error", where, "must be a table"))
            continue
        issues += [
            Issue("error", f"{where}.{k}", "is not a known key")
            for k in team
            if k not in ("name", *NODE_SECTIONS)
        ]
        team_name = team.get("name", parts[-1])
        issues += check_str(max_len=200, prose=True)(team_name, f"{where}.name")
        teams[path] = TeamSpec(path, team_name, _node(team, where, issues))
    for path in teams:
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        if parent is not None and parent not in teams:
            issues.append(
                Issue("error", f"teams.{path}", f"has no parent team {parent!r} in the document")
            )
    codex = _codex(_table(raw, "codex", issues), issues)
    if issues:
        raise DocumentInvalid(issues)
    return OrgPolicy(str(slug), str(name), endpoints, root, teams, codex)


def _codex(raw: Mapping[str, Any], issues: list[Issue]) -> CodexWindow:
    """The `[codex]` table's shape; what the values mean is checked with the rest of the policy."""
    defaults = CodexWindow()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"codex.{key}"
        if key in ("min_version", "max_version"):
            if isinstance(value, str):
                values[key] = value
            else:
                issues.append(Issue("error", where, 'must be a version string such as "0.169.0"'))
        elif key in ("accept_unenforced", "managed_pins"):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                values[key] = tuple(value)
            else:
                issues.append(Issue("error", where, "must be an array of requirement key names"))
        else:
            issues.append(
                Issue(
                    "error",
                    where,
                    "is not a known key (known: min_version, max_version, accept_unenforced, "
                    "managed_pins)",
                )
            )
    return CodexWindow(**{**defaults.__dict__, **values})


def _table(
    raw: Mapping[str, Any], key: str, issues: list[Issue], prefix: str = ""
) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        issues.append(Issue("error", f"{prefix}{key}", "must be a table"))
        return {}
    return value


def _node(raw: Mapping[str, Any], where: str, issues: list[Issue]) -> Node:
    prefix = f"{where}." if where else ""
    sections = {s: dict(_table(raw, s, issues, prefix)) for s in NODE_SECTIONS}
    for section in ("profiles", "mcp_servers"):
        for item_name, item in sections[section].items():
            if not isinstance(item, Mapping):
                issues.append(Issue("error", f"{prefix}{section}.{item_name}", "must be a table"))
            elif not NAME_RE.match(item_name):
                issues.append(
                    Issue(
                        "error",
                        f"{prefix}{section}.{item_name}",
                        "must be a name of lowercase letters, digits, '-' and '_'",
                    )
                )
    return Node(
        sections["requirements"], sections["config"], sections["profiles"], sections["mcp_servers"]
    )


# --- dump ----------------------------------------------------------------------------------------


def to_dict(policy: OrgPolicy) -> Json:
    doc: Json = {"organization": {"slug": policy.slug, "name": policy.name}}
    if policy.endpoints:
        doc["providers"] = {}
        for name in sorted(policy.endpoints):
            ep = policy.endpoints[name]
            entry: Json = {"kind": ep.kind, "provider_id": ep.provider_id, **canonical(ep.settings)}
            if ep.capabilities:
                entry["capabilities"] = canonical(dict(ep.capabilities))
            doc["providers"][name] = entry
    if not policy.codex.is_default():
        doc["codex"] = codex_dict(policy.codex)
    doc.update(_node_dict(policy.root))
    if policy.teams:
        doc["teams"] = {
            p: {"name": t.name, **_node_dict(t.node)} for p, t in sorted(policy.teams.items())
        }
    return doc


def codex_dict(window: CodexWindow) -> Json:
    """The window as stored and written: versions always, the lists when not empty."""
    out: Json = {"min_version": window.min_version, "max_version": window.max_version}
    for key in ("accept_unenforced", "managed_pins"):
        if getattr(window, key):
            out[key] = list(getattr(window, key))
    return out


def codex_window(stored: Mapping[str, Any]) -> CodexWindow:
    """The window from its stored form (an empty mapping is the default window)."""
    default = CodexWindow()
    return CodexWindow(
        min_version=str(stored.get("min_version", default.min_version)),
        max_version=str(stored.get("max_version", default.max_version)),
        accept_unenforced=tuple(stored.get("accept_unenforced", ())),
        managed_pins=tuple(stored.get("managed_pins", ())),
    )


def dump(policy: OrgPolicy) -> str:
    """The whole policy as deterministic TOML text."""
    header = (
        f"# PolicyHub policy of organisation {policy.slug}.\n"
        f"# Plan and apply: python manage.py policy apply --org {policy.slug} FILE [--dry-run]\n\n"
    )
    return header + toml_text(to_dict(policy))


def _node_dict(node: Node) -> Json:
    out: Json = {}
    for section in NODE_SECTIONS:
        value = getattr(node, section)
        if value:
            out[section] = canonical(dict(value))
    return out


# --- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One line of a plan: create, change or delete of one object (and, for changes, one key)."""

    action: str  # "create" | "change" | "delete"
    object: str  # "provider azure-ci", "team platform/ci", "team platform/ci profile ci", ...
    key: str = ""
    before: Any = None
    after: Any = None

    @property
    def node(self) -> str:
        """The team path whose node this changes; "" for the organisation's own (its name,
        endpoints, Codex window and root node)."""
        kind, _, rest = self.object.partition(" ")
        return rest.split(" ", 1)[0] if kind == "team" else ""

    def __str__(self) -> str:
        sign = {"create": "+", "change": "~", "delete": "-"}[self.action]
        if self.action == "change":
            return f"{sign} {self.object} {self.key}: {_show(self.before)} -> {_show(self.after)}"
        return f"{sign} {self.object}"


def plan(current: OrgPolicy, wanted: OrgPolicy) -> list[Change]:
    """Every difference between two policies, deletions included, in a stable order."""
    changes: list[Change] = []
    if current.name != wanted.name:
        changes.append(Change("change", "organization", "name", current.name, wanted.name))
    old_eps = {n: _endpoint_dict(e) for n, e in current.endpoints.items()}
    new_eps = {n: _endpoint_dict(e) for n, e in wanted.endpoints.items()}
    changes += _diff_objects("provider", old_eps, new_eps)
    window = _diff_keys("codex", "", codex_dict(current.codex), codex_dict(wanted.codex))
    changes += [Change(c.action, c.object, c.key.lstrip("."), c.before, c.after) for c in window]
    changes += _diff_node("organization", current.root, wanted.root)
    for path in sorted(set(current.teams) | set(wanted.teams)):
        old, new = current.teams.get(path), wanted.teams.get(path)
        label = f"team {path}"
        if old is None and new is not None:
            changes.append(Change("create", label, after=new.name))
            changes += _diff_node(label, Node(), new.node)
        elif new is None and old is not None:
            # The whole team as it stood, so the plan and the audit trail keep what was removed.
            before = {"name": old.name, **_node_dict(old.node)}
            changes.append(Change("delete", label, before=before))
        elif old is not None and new is not None:
            if old.name != new.name:
                changes.append(Change("change", label, "name", old.name, new.name))
            changes += _diff_node(label, old.node, new.node)
    return changes


def _endpoint_dict(ep: Endpoint) -> Json:
    return {
        "kind": ep.kind,
        "provider_id": ep.provider_id,
        **ep.settings,
        "capabilities": dict(ep.capabilities),
    }


def _diff_node(label: str, old: Node, new: Node) -> list[Change]:
    changes = _diff_keys(label, "requirements", old.requirements, new.requirements)
    changes += _diff_keys(label, "config", old.config, new.config)
    changes += _diff_objects(f"{label} profile", dict(old.profiles), dict(new.profiles))
    changes += _diff_objects(f"{label} mcp server", dict(old.mcp_servers), dict(new.mcp_servers))
    return changes


def _diff_keys(
    label: str, section: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[Change]:
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key) or (key in old) != (key in new):
            changes.append(Change("change", label, f"{section}.{key}", old.get(key), new.get(key)))
    return changes


def _diff_objects(label: str, old: Mapping[str, Json], new: Mapping[str, Json]) -> list[Change]:
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            changes.append(Change("create", f"{label} {name}", after=new[name]))
        elif name not in new:
            changes.append(Change("delete", f"{label} {name}", before=old[name]))
        else:
            changes += _diff_keys(f"{label} {name}", "", old[name], new[name])
    return [Change(c.action, c.object, c.key.lstrip("."), c.before, c.after) for c in changes]


def _show(value: Any) -> str:
    return "(unset)" if value is None else repr(value)
