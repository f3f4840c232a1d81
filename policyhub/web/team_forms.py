"""The editor of one policy node (the organisation's own or a team's), built from the policy
schema (`policies.schema`): an enumeration is a select, an allow-list a set of checkboxes, a
requirement's boolean a select of "not set", true and false (unset and false differ there), a
list one item a line; prefix rules and MCP servers are repeatable rows, profiles one form each,
and the whole node can be written as TOML.

Every editor reads and writes the node's tables in the policy document's shape (`requirements`,
`config`, `profiles.<name>`, `mcp_servers.<name>`, as under `[teams.<path>]`): `apply(table)`
sets what the form shows and keeps every key it does not show, so the same call builds the
change set draft's edit and the candidate node that live validation checks. `places(path)`
names the field a finding at a node-relative path belongs beside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, cast

from django import forms

from policyhub.policies import areas, document, schema
from policyhub.policies.document import NODE_SECTIONS
from policyhub.policies.domain import Json, Node
from policyhub.policies.tomlio import canonical, toml_text
from policyhub.validators import plain_text

# A field of the editor: the form and the field name (None: the form as a whole).
Place = tuple[forms.Form, str | None]

# How a key is edited.
ENUM = "enum"  # one of the schema's values, or not set
OPEN_ENUM = "open-enum"  # Codex takes any string; the documented values are offered
ALLOWLIST = "allowlist"  # a subset of the schema's values (checkboxes)
TRISTATE = "tristate"  # not set, true or false
CHECKBOX = "checkbox"  # true, or not set (where not set is Codex's false)
TEXT = "text"
LONG_TEXT = "long-text"
LINES = "lines"  # a list of strings, one a line
ENDPOINT = "endpoint"  # the name of one of the organisation's endpoints

NOT_SET = ("", "(not set)")


@dataclass(frozen=True)
class Key:
    """One key of a section as the form shows it; `key` is dotted for nested tables."""

    key: str
    kind: str
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def name(self) -> str:
        """The form field's name (a dot would not survive as an HTML id selector)."""
        return self.key.replace(".", "__")


REQUIREMENT_FIELDS = (
    Key(
        "allowed_approval_policies",
        ALLOWLIST,
        schema.APPROVAL_POLICIES,
        "When Codex asks before acting. A team below may only remove values. The first value "
        "config.toml can hold is the default when no node sets approval_policy.",
    ),
    Key("allowed_approvals_reviewers", ALLOWLIST, schema.APPROVALS_REVIEWERS),
    Key(
        "allowed_sandbox_modes",
        ALLOWLIST,
        schema.SANDBOX_MODES,
        "Must contain read-only (Codex refuses to start otherwise).",
    ),
    Key(
        "allowed_web_search_modes",
        ALLOWLIST,
        schema.WEB_SEARCH_MODES,
        "disabled is always allowed by Codex.",
    ),
    Key("allowed_login_methods", ALLOWLIST, schema.LOGIN_METHODS),
    Key("allowed_chatgpt_workspaces", LINES, help="ChatGPT workspace ids, one a line."),
    Key("cli_auth_credentials_store", ENUM, schema.CREDENTIAL_STORES),
    Key("enforce_residency", ENUM, schema.RESIDENCIES),
    Key(
        "model_provider",
        ENDPOINT,
        help="Pins every session to this endpoint; a team below may not change it.",
    ),
    Key("allow_login_shell", TRISTATE, help="false forbids login shells; a team below keeps it."),
    Key("allow_managed_hooks_only", TRISTATE),
    Key("check_for_update_on_startup", TRISTATE),
    Key(
        "additional_developer_instructions",
        LONG_TEXT,
        help="Added to every session; a team below appends its own.",
    ),
    # The newer areas: their scalar keys here; maps and lists of tables (network domains,
    # hooks, exporters, permission profiles) in the node's TOML.
    Key(
        "default_permissions",
        ENUM,
        areas.PERMISSION_PROFILES,
        "The permission profile sessions start with; allowed_permission_profiles (TOML) must "
        "allow it.",
    ),
    Key(
        "model_providers",
        LINES,
        help="Endpoints, one a line, whose definitions Codex must use whenever a session picks "
        "them; a team below adds its own.",
    ),
    Key("allow_appshots", TRISTATE, help="false forbids app shots; a team below keeps it."),
    Key("allow_browser_and_computer_use", TRISTATE),
    Key("allow_remote_control", TRISTATE),
    Key("chatgpt_base_url", TEXT, help="Pinned: a team below may not change it."),
    Key("log_dir", TEXT, help="An absolute path; pinned."),
    Key("sqlite_home", TEXT, help="An absolute path; pinned."),
    Key(
        "windows.allowed_sandbox_implementations",
        ALLOWLIST,
        areas.WINDOWS_SANDBOXES,
        "Windows sandboxes Codex may use; a team below may only remove values.",
    ),
    Key("feedback.enabled", TRISTATE, help="false turns feedback uploads off for good."),
    Key("in_app_browser.allow_external_browser_settings_import", TRISTATE),
    Key("browser_use.allow_history_access", TRISTATE),
    Key("computer_use.allow_persistent_approval", TRISTATE),
    Key("computer_use.default_app_access", ENUM, areas.ALLOW_DENY),
    Key("network_proxy.enabled", TRISTATE, help="Route sessions through Codex's network proxy."),
    Key("network_proxy.managed_allowed_domains_only", TRISTATE),
    Key(
        "network_proxy.review_domains",
        LINES,
        help="Host patterns that need approval, one a line; a team below adds its own.",
    ),
    Key("auto_review.required_on_models", LINES, help="Models, one a line."),
    Key("models.new_thread.model", TEXT, help="The default model of new threads (not enforced)."),
    Key("models.new_thread.model_reasoning_effort", OPEN_ENUM, schema.KNOWN_REASONING_EFFORTS),
    Key("otel.environment", TEXT, help="Exporters and headers are set in the node's TOML."),
    Key("otel.log_user_prompt", TRISTATE),
    Key("hooks.managed_dir", TEXT, help="An absolute path; hooks themselves go in the TOML."),
)
PROFILE_FIELDS = (
    Key("model", TEXT, help="For an Azure endpoint: one of its deployments."),
    Key("model_provider", ENDPOINT),
    Key("model_reasoning_effort", OPEN_ENUM, schema.KNOWN_REASONING_EFFORTS),
    Key("plan_mode_reasoning_effort", OPEN_ENUM, schema.KNOWN_REASONING_EFFORTS),
    Key("model_reasoning_summary", ENUM, schema.REASONING_SUMMARIES),
    Key("model_verbosity", ENUM, schema.VERBOSITIES),
    Key("service_tier", OPEN_ENUM, schema.KNOWN_SERVICE_TIERS),
    Key("approval_policy", ENUM, schema.CONFIG_APPROVAL_POLICIES),
    Key("approvals_reviewer", ENUM, schema.APPROVALS_REVIEWERS),
    Key("sandbox_mode", ENUM, schema.SANDBOX_MODES),
    Key("web_search", ENUM, schema.WEB_SEARCH_MODES),
)
CONFIG_FIELDS = (
    *PROFILE_FIELDS,
    Key("forced_login_method", ENUM, schema.LOGIN_METHODS),
    Key("openai_base_url", TEXT),
    Key("cli_auth_credentials_store", ENUM, schema.CREDENTIAL_STORES),
    Key("forced_chatgpt_workspace_id", TEXT),
    Key("chatgpt_base_url", TEXT),
    Key(
        "windows.sandbox",
        ENUM,
        areas.WINDOWS_SANDBOXES,
        "Derived from the first allowed Windows sandbox when not set.",
    ),
    Key(
        "default_permissions",
        ENUM,
        areas.PERMISSION_PROFILES,
        "The permission profile sessions start with; the requirements must allow it.",
    ),
    Key("hide_agent_reasoning", TRISTATE),
    Key("show_raw_agent_reasoning", TRISTATE),
    Key("check_for_update_on_startup", TRISTATE),
    Key("file_opener", ENUM, areas.FILE_OPENERS),
    Key("notify", LINES, help="A command run on each turn, one argument a line."),
    Key("history.persistence", ENUM, areas.HISTORY_PERSISTENCE),
    Key("shell_environment_policy.inherit", ENUM, areas.SHELL_INHERIT),
    Key("otel.environment", TEXT, help="Exporters and headers are set in the node's TOML."),
    Key(
        "sandbox_workspace_write.writable_roots",
        LINES,
        help="Absolute paths, one a line, writable in workspace-write mode.",
    ),
    Key("sandbox_workspace_write.network_access", CHECKBOX),
    Key("sandbox_workspace_write.exclude_tmpdir_env_var", CHECKBOX),
    Key("sandbox_workspace_write.exclude_slash_tmp", CHECKBOX),
)
# Keys of the schema no form shows: they are kept as they are, and edited as TOML.
TOML_ONLY = {
    # rules: the rule rows' own form; the rest are maps or tables of tables.
    "requirements": (
        "features",
        "mcp_servers",
        "rules",
        "allowed_permission_profiles",
        "application",
    ),
    "config": (
        "features",
        "project_doc_max_bytes",
        "model_context_window",
        "model_auto_compact_token_limit",
    ),
}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _get(table: Mapping[str, Any], dotted: str) -> Any:
    value: Any = table
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _put(table: Json, dotted: str, value: Any) -> None:
    """Set (or, for None, remove) a dotted key; a nested table left empty goes too."""
    head, _, rest = dotted.partition(".")
    if not rest:
        if value is None:
            table.pop(head, None)
        else:
            table[head] = value
        return
    inner = table.get(head)
    if not isinstance(inner, dict):
        if value is None:
            return
        inner = table[head] = {}
    _put(inner, rest, value)
    if not inner:
        del table[head]


def _set_section(table: Json, section: str, value: Json) -> None:
    if value:
        table[section] = value
    else:
        table.pop(section, None)


def node_table(node: Node) -> Json:
    """A node as its tables in the document (empty sections left out)."""
    return {
        section: deepcopy(dict(getattr(node, section)))
        for section in NODE_SECTIONS
        if getattr(node, section)
    }


def table_node(table: Mapping[str, Any]) -> Node:
    """The node a table of the document describes (its shape checked: `TomlForm`)."""
    return Node(
        dict(table.get("requirements", {})),
        dict(table.get("config", {})),
        dict(table.get("profiles", {})),
        dict(table.get("mcp_servers", {})),
    )


def _with_describedby(form: forms.Form) -> None:
    """Each input names the element its findings appear in, which live validation refills."""
    for bound in form:
        bound.field.widget.attrs["aria-describedby"] = f"{bound.auto_id}-errors"


def _key_field(key: Key, current: Any, endpoints: Sequence[str]) -> forms.Field:
    label = key.key.replace("sandbox_workspace_write.", "sandbox_workspace_write: ")
    common: dict[str, Any] = {"label": label, "required": False, "help_text": key.help}
    if key.kind in (ENUM, OPEN_ENUM, ENDPOINT):
        offered = list(endpoints) if key.kind == ENDPOINT else list(key.choices)
        if isinstance(current, str) and current and current not in offered:
            # Shown as it is, so saving another field never changes it; validation says why
            # it is wrong, if it is.
            offered.append(current)
        return forms.ChoiceField(choices=[NOT_SET, *((v, v) for v in offered)], **common)
    if key.kind == ALLOWLIST:
        return forms.MultipleChoiceField(
            choices=[(v, v) for v in key.choices], widget=forms.CheckboxSelectMultiple, **common
        )
    if key.kind == TRISTATE:
        return forms.ChoiceField(choices=[NOT_SET, ("true", "true"), ("false", "false")], **common)
    if key.kind == CHECKBOX:
        return forms.BooleanField(**common)
    if key.kind == LONG_TEXT:
        return forms.CharField(
            widget=forms.Textarea(attrs={"rows": 4}), validators=[plain_text], **common
        )
    if key.kind == LINES:
        return forms.CharField(
            widget=forms.Textarea(attrs={"rows": 3}), validators=[plain_text], **common
        )
    return forms.CharField(max_length=4096, validators=[plain_text], **common)


NOT_SHOWN = (
    "It holds a value this form cannot show (a granular approval policy); it is kept as it is: "
    "edit it in the node's TOML."
)


def _shown(key: Key, value: Any) -> bool:
    """Whether the field can show `value`: text where it takes text, lists of text."""
    if value is None:
        return True
    if key.kind in (ENUM, OPEN_ENUM, ENDPOINT, TEXT, LONG_TEXT):
        return isinstance(value, str)
    if key.kind in (ALLOWLIST, LINES):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return True


def _initial(key: Key, value: Any) -> Any:
    if value is None:
        return None
    if key.kind == TRISTATE:
        return "true" if value is True else "false" if value is False else ""
    if key.kind == LINES and isinstance(value, list):
        return "\n".join(map(str, value))
    return value


def _value(key: Key, given: Any, before: Any) -> Any:
    """The value a field's input gives the key; None removes it."""
    if key.kind == ALLOWLIST:
        if not given:
            return None
        # An allow-list is ordered by preference (the first usable value is the default):
        # values it had keep their places, new ones follow in the schema's order.
        kept = [v for v in before if v in given] if isinstance(before, list) else []
        return kept + [v for v in key.choices if v in given and v not in kept]
    if key.kind == TRISTATE:
        return {"true": True, "false": False}.get(given)
    if key.kind == CHECKBOX:
        return True if given else None
    if key.kind == LINES:
        return _lines(given or "") or None
    return given or None


class SectionForm(forms.Form):
    """The keys of one section the schema describes (`keys`), over the section as it is."""

    section = ""
    keys: tuple[Key, ...] = ()

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        current: Mapping[str, Any],
        endpoints: Sequence[str],
        prefix: str,
    ) -> None:
        super().__init__(data, prefix=prefix)
        self.current = dict(current)
        for key in self.keys:
            value = _get(self.current, key.key)
            field = self.fields[key.name] = _key_field(key, value, endpoints)
            if _shown(key, value):
                self.initial[key.name] = _initial(key, value)
            else:
                # A granular approval policy: kept as it is on save, edited as TOML.
                field.disabled = True
                field.help_text = f"{field.help_text} {NOT_SHOWN}".strip()
        _with_describedby(self)

    def section_values(self, before: Mapping[str, Any]) -> Json:
        """`before` with every key this form shows set from its input."""
        out = deepcopy(dict(before))
        for key in self.keys:
            if not self.fields[key.name].disabled:
                given = self.cleaned_data.get(key.name)
                _put(out, key.key, _value(key, given, _get(before, key.key)))
        return out

    def apply(self, table: Json) -> None:
        _set_section(table, self.section, self.section_values(table.get(self.section, {})))

    def places(self) -> dict[str, Place]:
        return {f"{self.section}.{key.key}": (self, key.name) for key in self.keys}


class RequirementsForm(SectionForm):
    section = "requirements"
    keys = REQUIREMENT_FIELDS


class ConfigForm(SectionForm):
    section = "config"
    keys = CONFIG_FIELDS


class ProfileForm(SectionForm):
    """One profile of the node: a new one (`original` ""), or one it has, renamed or not."""

    section = "profiles"
    keys = PROFILE_FIELDS

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        original: str,
        existing: Iterable[str],
        current: Mapping[str, Any],
        endpoints: Sequence[str],
        prefix: str,
    ) -> None:
        super().__init__(data, current=current, endpoints=endpoints, prefix=prefix)
        self.original, self.existing = original, set(existing)
        self.fields = {
            "name": forms.CharField(
                label="Profile name",
                max_length=63,
                validators=[plain_text],
                help_text="Lowercase letters, digits, '-' and '_'; sessions select it with "
                "--profile <name>.",
                initial=original,
            ),
            **self.fields,
        }
        self.initial["name"] = original
        _with_describedby(self)

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        if name != self.original and name in self.existing:
            raise forms.ValidationError(f"this node already has a profile {name!r}")
        return name

    def apply(self, table: Json) -> None:
        profiles = dict(table.get("profiles", {}))
        before = profiles.pop(self.original, {}) if self.original else {}
        profiles[self.cleaned_data["name"]] = self.section_values(before)
        _set_section(table, "profiles", profiles)

    def places(self) -> dict[str, Place]:
        name = getattr(self, "cleaned_data", {}).get("name") or self.original
        where = f"profiles.{name}"
        found: dict[str, Place] = {where: (self, "name")}
        return found | {f"{where}.{key.key}": (self, key.name) for key in self.keys}


# --- repeatable rows ------------------------------------------------------------------------


class RowsForm(forms.BaseFormSet):  # type: ignore[type-arg]
    """Rows of one kind: blank rows are left out, ticked "Remove" rows are deleted."""

    def fail(self, message: str) -> None:
        """A finding about the rows together (two of the same name)."""
        self._non_form_errors = self.error_class([message])

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = "Remove this row"

    def kept(self) -> list[forms.Form]:
        return [
            form
            for form in self.forms
            if form.has_changed() or form.initial
            if not (self.can_delete and self._should_delete_form(form))  # type: ignore[attr-defined]
        ]


class McpRowForm(forms.Form):
    """One MCP server of the node: how Codex starts or reaches it, and the keys most edited;
    the rest of its definition (env, headers, timeouts, tool lists) is kept as it is."""

    original = forms.CharField(required=False, widget=forms.HiddenInput)
    name = forms.CharField(label="Name", max_length=63, required=False, validators=[plain_text])
    transport = forms.ChoiceField(
        label="Transport",
        choices=[("command", "command (stdio)"), ("url", "url (streamable HTTP)")],
        initial="command",
    )
    target = forms.CharField(
        label="Command or URL", max_length=2048, required=False, validators=[plain_text]
    )
    args = forms.CharField(
        label="Arguments, one a line",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        validators=[plain_text],
    )
    env_vars = forms.CharField(
        label="Environment variables passed through (names)",
        required=False,
        max_length=2048,
        validators=[plain_text],
    )
    bearer_token_env_var = forms.CharField(
        label="Bearer token variable (name)", required=False, max_length=255
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _with_describedby(self)

    def clean(self) -> dict[str, Any]:
        given = super().clean() or {}
        if self.has_changed() and not given.get("name"):
            self.add_error("name", "a server needs a name")
        return given

    def definition(self, before: Mapping[str, Any]) -> Json:
        given = self.cleaned_data
        out = deepcopy(dict(before))
        transport = given["transport"]
        out.pop("url" if transport == "command" else "command", None)
        _put(out, transport, given["target"].strip() or None)
        _put(out, "args", _lines(given["args"]) or None)
        _put(out, "env_vars", given["env_vars"].split() or None)
        _put(out, "bearer_token_env_var", given["bearer_token_env_var"].strip() or None)
        # Enabled is Codex's default: written only to switch a server off (or where it was).
        out["enabled"] = bool(given["enabled"])
        if given["enabled"] and "enabled" not in before:
            del out["enabled"]
        return out


def mcp_initial(servers: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "original": name,
            "name": name,
            "transport": "url" if "url" in server else "command",
            "target": server.get("url", server.get("command", "")),
            "args": "\n".join(map(str, server.get("args", []))),
            "env_vars": " ".join(map(str, server.get("env_vars", []))),
            "bearer_token_env_var": server.get("bearer_token_env_var", ""),
            "enabled": server.get("enabled", True) is not False,
        }
        for name, server in servers.items()
    ]


def _rows(form: type[forms.Form]) -> type[RowsForm]:
    made = forms.formset_factory(form, formset=RowsForm, extra=0, can_delete=True)
    return cast(type[RowsForm], made)


McpRows = _rows(McpRowForm)


class McpEditor:
    """The node's MCP servers as rows; `add_row` shows one more, empty."""

    section = "mcp_servers"

    def __init__(
        self, data: Mapping[str, Any] | None, *, current: Mapping[str, Any], add_row: bool = False
    ) -> None:
        self.current = {name: dict(server) for name, server in current.items()}
        initial = mcp_initial(self.current)
        if data is not None and add_row:
            data = _one_more_row(data, "mcp")
        self.rows = McpRows(data, initial=initial, prefix="mcp")
        if data is None and not initial:
            self.rows.extra = 1  # an empty row to start from

    def is_valid(self) -> bool:
        valid = self.rows.is_valid()
        names = [form.cleaned_data.get("name") for form in self.rows.kept()] if valid else []
        if valid and len(set(names)) != len(names):
            self.rows.fail("two servers have the same name")
            return False
        return valid

    def apply(self, table: Json) -> None:
        servers = dict(table.get("mcp_servers", {}))
        out: Json = {}
        for form in self.rows.kept():
            assert isinstance(form, McpRowForm)
            before = servers.get(form.cleaned_data["original"], {})
            out[form.cleaned_data["name"]] = form.definition(before)
        _set_section(table, "mcp_servers", out)

    def places(self) -> dict[str, Place]:
        found: dict[str, Place] = {}
        for form in self.rows.forms:
            given = getattr(form, "cleaned_data", {})
            name = given.get("name") or form.initial.get("name")
            if not name:
                continue
            where = f"mcp_servers.{name}"
            found[where] = (form, None)
            for key, field in (
                ("command", "target"),
                ("url", "target"),
                ("args", "args"),
                ("env_vars", "env_vars"),
                ("bearer_token_env_var", "bearer_token_env_var"),
                ("enabled", "enabled"),
            ):
                found[f"{where}.{key}"] = (form, field)
        return found


def _one_more_row(data: Mapping[str, Any], prefix: str) -> Any:
    more = data.copy() if hasattr(data, "copy") else dict(data)
    field = f"{prefix}-TOTAL_FORMS"
    try:
        more[field] = str(int(more.get(field, "0")) + 1)
    except ValueError:
        more[field] = "1"
    return more


class RuleRowForm(forms.Form):
    """One prefix rule: the command's first words, and what Codex does with such a command."""

    pattern = forms.CharField(
        label="Command prefix",
        max_length=1024,
        required=False,
        validators=[plain_text],
        help_text="Words separated by spaces; a|b matches either word.",
    )
    decision = forms.ChoiceField(
        label="Decision", choices=[(d, d) for d in schema.RULE_DECISIONS], initial="prompt"
    )
    justification = forms.CharField(
        label="Justification", max_length=1024, required=False, validators=[plain_text]
    )
    canonical_matching = forms.BooleanField(label="Canonical matching", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _with_describedby(self)

    def clean(self) -> dict[str, Any]:
        given = super().clean() or {}
        if self.has_changed() and not str(given.get("pattern", "")).split():
            self.add_error("pattern", "a rule needs at least one word")
        return given

    def rule(self) -> Json:
        given = self.cleaned_data
        pattern = [
            {"any_of": word.split("|")} if "|" in word else {"token": word}
            for word in given["pattern"].split()
        ]
        rule: Json = {"pattern": pattern, "decision": given["decision"]}
        if given["justification"].strip():
            rule["justification"] = given["justification"].strip()
        if given["canonical_matching"]:
            rule["canonical_matching"] = True
        return rule


def rule_text(rule: Mapping[str, Any]) -> str | None:
    """A rule's pattern as the row shows it, or None when a row cannot show it faithfully."""
    words = []
    for part in rule.get("pattern", []):
        if not isinstance(part, Mapping):
            return None
        options = [part["token"]] if "token" in part else part.get("any_of", [])
        if not options or any(
            not isinstance(o, str) or not o or "|" in o or o.split() != [o] for o in options
        ):
            return None
        words.append("|".join(options))
    return " ".join(words)


RuleRows = _rows(RuleRowForm)


class RulesEditor:
    """The node's prefix rules (`requirements.rules.prefix_rules`) as rows, appended below
    those of the nodes above. Rules a row cannot show faithfully are edited as TOML only."""

    section = "requirements"

    def __init__(
        self,
        data: Mapping[str, Any] | None,
        *,
        current: Mapping[str, Any],
        add_row: bool = False,
    ) -> None:
        rules = _get(current, "rules.prefix_rules") or []
        texts = [rule_text(rule) for rule in rules]
        self.editable = all(text is not None for text in texts)
        initial = [
            {
                "pattern": text,
                "decision": rule.get("decision"),
                "justification": rule.get("justification", ""),
                "canonical_matching": rule.get("canonical_matching", False),
            }
            for text, rule in zip(texts, rules, strict=True)
        ]
        if data is not None and add_row:
            data = _one_more_row(data, "rules")
        self.rows = RuleRows(data, initial=initial, prefix="rules")
        if data is None and not initial:
            self.rows.extra = 1  # an empty row to start from

    def is_valid(self) -> bool:
        return self.editable and self.rows.is_valid()

    def apply(self, table: Json) -> None:
        requirements = dict(table.get("requirements", {}))
        rules = [form.rule() for form in self.rows.kept() if isinstance(form, RuleRowForm)]
        _put(requirements, "rules.prefix_rules", rules or None)
        _set_section(table, "requirements", requirements)

    def places(self) -> dict[str, Place]:
        found: dict[str, Place] = {}
        for index, form in enumerate(self.rows.kept() if self.rows.is_bound else self.rows.forms):
            where = f"requirements.rules.prefix_rules[{index}]"
            found[where] = (form, None)
            for field in ("pattern", "decision", "justification", "canonical_matching"):
                found[f"{where}.{field}"] = (form, field)
        return found


# --- the node as TOML -------------------------------------------------------------------------


class TomlForm(forms.Form):
    """The node's own tables as TOML, as under `[teams.<path>]` of the policy document."""

    toml = forms.CharField(
        label="This node as TOML",
        required=False,
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}),
        validators=[plain_text],
        help_text="Tables requirements, config, profiles.<name> and mcp_servers.<name>; "
        "what you remove here is removed from the node.",
    )

    # Findings all go beside the one field, so each names its path.
    qualifies = True

    def __init__(
        self, data: Mapping[str, Any] | None = None, *, current: Mapping[str, Any]
    ) -> None:
        super().__init__(data, prefix="node")
        self.initial["toml"] = toml_text(canonical(dict(current))) if current else ""
        _with_describedby(self)

    def clean_toml(self) -> Json:
        try:
            raw = document.toml_loads(self.cleaned_data["toml"])
        except document.DocumentInvalid as refused:
            raise forms.ValidationError([issue.message for issue in refused.issues]) from None
        problems = [
            f"{key}: is not a section of a node (known: {', '.join(NODE_SECTIONS)})"
            for key in raw
            if key not in NODE_SECTIONS
        ]
        for section in NODE_SECTIONS:
            value = raw.get(section, {})
            if not isinstance(value, dict):
                problems.append(f"{section}: must be a table")
            elif section in ("profiles", "mcp_servers"):
                problems += [
                    f"{section}.{name}: must be a table"
                    for name, item in value.items()
                    if not isinstance(item, dict)
                ]
        if problems:
            raise forms.ValidationError(problems)
        return raw

    def apply(self, table: Json) -> None:
        given = self.cleaned_data["toml"]
        for section in NODE_SECTIONS:
            _set_section(table, section, given.get(section, {}))

    def places(self) -> dict[str, Place]:
        return {section: (self, "toml") for section in NODE_SECTIONS}


def schema_keys_shown() -> dict[str, set[str]]:
    """The schema's keys each section's form shows (top-level keys), for the tests that keep
    the forms in step with the schema."""
    return {
        "requirements": {key.key.split(".")[0] for key in REQUIREMENT_FIELDS},
        "config": {key.key.split(".")[0] for key in CONFIG_FIELDS},
        "profiles": {key.key for key in PROFILE_FIELDS},
    }
