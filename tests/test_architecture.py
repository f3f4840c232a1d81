"""The app graph stays what docs/architecture.md says it is.

The rules are read from the document itself (the table between its `import-rules` markers), so
the page and the check cannot drift apart. Every import of `policyhub/` and `providers/` counts:
at module level, inside functions and under TYPE_CHECKING alike.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.apps import apps

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
PACKAGES = ("policyhub", "providers")
# Modules of the project package that are not apps: shared below every app, or wiring above all.
CORE = {"errors", "env", "validators", "apis", "logfilters", "actors", "credentials", "caches"}
PROJECT = {"settings", "urls", "wsgi", "celery", "__init__"}


@dataclass(frozen=True)
class Import:
    """One import statement of a project module."""

    source: str  # importing module, e.g. policyhub.fleet.services
    target: str  # imported project module, e.g. policyhub.releases.services.keys
    where: str  # path:line
    in_function: str | None  # the enclosing function, if any


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "providers":
        return "providers"
    if len(parts) == 1 or parts[1] in PROJECT:
        return "project"
    if parts[1] in CORE:
        return "core"
    return parts[1]


def read_table(marker: str) -> list[list[str]]:
    """The rows of the markdown table between `<!-- marker:begin -->` and `:end`."""
    text = DOC.read_text()
    match = re.search(rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert match, f"docs/architecture.md has no {marker} table"
    rows = [line.strip().strip("|").split("|") for line in match.group(1).splitlines()]
    return [[cell.strip() for cell in row] for row in rows[2:] if len(row) > 1]


def import_rules() -> dict[str, set[str]]:
    """Layer -> the layers it may import, as the document's table says."""
    rows = read_table("import-rules")
    layers = [re.sub(r"`", "", row[0]) for row in rows]
    app_layers = [name for name in layers if name not in ("providers", "core", "project")]
    rules: dict[str, set[str]] = {}
    for layer, row in zip(layers, rows, strict=True):
        allowed = set(re.findall(r"`([a-z_]+)`", row[1]))
        if "every app" in row[1]:
            allowed |= set(app_layers) - {layer}
        if "everything" in row[1]:
            allowed = set(layers) - {layer}
        rules[layer] = allowed
    return rules


def relation_exceptions() -> set[tuple[str, str]]:
    """(model field, target model) pairs the document lists as allowed to point up."""
    return {(row[0].strip("`"), row[1].strip("`")) for row in read_table("relation-exceptions")}


# --- collecting the graph ----------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, is_package: bool, known: Iterable[str]) -> None:
        self.module, self.path, self.is_package = module, path, is_package
        self.known, self.functions = set(known), list[str]()
        self.found: list[Import] = []
        self.dynamic: list[str] = []  # where import_module or __import__ is called

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if name in ("import_module", "__import__"):
            self.dynamic.append(f"{self.path.relative_to(REPO)}:{node.lineno}")
        self.generic_visit(node)

    def _add(self, target: str, node: ast.stmt) -> None:
        if target.split(".")[0] in PACKAGES:
            function = self.functions[-1] if self.functions else None
            where = f"{self.path.relative_to(REPO)}:{node.lineno}"
            self.found.append(Import(self.module, target, where, function))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.module if self.is_package else self.module.rsplit(".", 1)[0]
            for _ in range(node.level - 1):
                package = package.rsplit(".", 1)[0]
            base = f"{package}.{base}".rstrip(".")
        for alias in node.names:
            # `from package import module` imports that module; otherwise a name of `base`.
            child = f"{base}.{alias.name}"
            self._add(child if child in self.known else base, node)


def collect(modules: Mapping[str, Path]) -> tuple[list[Import], list[str]]:
    """Every import statement of the project's modules, and where modules are imported by name
    at run time instead."""
    found: list[Import] = []
    dynamic: list[str] = []
    for module, path in sorted(modules.items()):
        collector = _Collector(module, path, path.name == "__init__.py", modules)
        collector.visit(ast.parse(path.read_text(), str(path)))
        found += collector.found
        dynamic += collector.dynamic
    return found, dynamic


def with_packages(imports: Iterable[Import], known: Iterable[str]) -> list[Import]:
    """The imports plus what Python runs first for each: the `__init__` of every package above the
    imported module (those above the importing module itself have run already)."""
    known = set(known)
    out = []
    for item in imports:
        out.append(item)
        parts = item.target.split(".")
        for depth in range(1, len(parts)):
            package = ".".join(parts[:depth])
            mine = item.source == package or item.source.startswith(f"{package}.")
            if package in known and not mine:
                out.append(Import(item.source, package, item.where, item.in_function))
    return out


# --- the checks (plain functions over the graph, so they can be tried on made-up graphs) --------


def forbidden(imports: Iterable[Import], rules: Mapping[str, set[str]]) -> list[str]:
    """Imports from one layer into another that the rules do not allow."""
    out = []
    for item in imports:
        source, target = layer_of(item.source), layer_of(item.target)
        if source != target and target not in rules.get(source, set()):
            out.append(f"{item.where}: {source} may not import {target} ({item.target})")
    return out


def hidden(imports: Iterable[Import]) -> list[str]:
    """Project imports inside functions (they dodge cycles); only AppConfig.ready() may."""
    return [
        f"{item.where}: imports {item.target} inside {item.in_function}()"
        for item in imports
        if item.in_function is not None
        and not (item.in_function == "ready" and item.source.endswith(".apps"))
    ]


def cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for item in imports:
        graph.setdefault(item.source, set()).add(item.target)
        graph.setdefault(item.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def acyclic(rules: Mapping[str, set[str]]) -> bool:
    """Whether the allowed layer graph has no cycle (a layering, not a tangle)."""
    edges = [
        Import(layer, other, "", None) for layer, allowed in rules.items() for other in allowed
    ]
    return not cycles(edges)


# --- the tests ------------------------------------------------------------------------------------

MODULES = project_modules()
IMPORTS, DYNAMIC = collect(MODULES)


def test_the_documented_rules_are_a_layering_of_every_app() -> None:
    rules = import_rules()
    installed = {
        config.name.split(".")[1]
        for config in apps.get_app_configs()
        if config.name.startswith("policyhub.")
    }
    assert installed <= set(rules), (
        f"apps missing from docs/architecture.md: {installed - set(rules)}"
    )
    layers = set(rules)
    assert all(allowed <= layers for allowed in rules.values())
    assert acyclic({k: v for k, v in rules.items() if k != "project"})


def test_every_import_follows_the_documented_directions() -> None:
    assert forbidden(IMPORTS, import_rules()) == []


def test_no_import_cycle_between_modules() -> None:
    assert cycles(with_packages(IMPORTS, MODULES)) == []


def test_no_project_import_hides_inside_a_function_or_behind_a_name() -> None:
    assert hidden(IMPORTS) == []
    assert DYNAMIC == []


def test_providers_is_plain_python() -> None:
    for module, path in MODULES.items():
        if module.startswith("providers"):
            tree = ast.parse(path.read_text())
            names = [
                alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.Import)
                for alias in node.names
            ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
            assert not [n for n in names if n.split(".")[0] in ("django", "policyhub")], module


def _relations() -> Iterator[tuple[str, str, str, str]]:
    """(source app, field label, target app, target label) of every relation of our models."""
    for model in apps.get_models():
        if not model.__module__.startswith("policyhub."):
            continue
        for field in model._meta.get_fields():
            if field.auto_created or not field.is_relation or field.related_model is None:
                continue
            target = field.related_model
            if not target.__module__.startswith("policyhub."):
                continue  # Django's own (users)
            yield (
                model._meta.app_label,
                f"{model._meta.app_label}.{model.__name__}.{field.name}",
                target._meta.app_label,
                f"{target._meta.app_label}.{target.__name__}",
            )


def test_model_relations_point_down_or_are_documented_exceptions() -> None:
    rules, allowed = import_rules(), relation_exceptions()
    upward = {
        (field, target)
        for source_app, field, target_app, target in _relations()
        if source_app != target_app and target_app not in rules[source_app]
    }
    assert upward == allowed, "update docs/architecture.md, 'Model relations that point up'"


def test_the_checks_find_what_they_are_for() -> None:
    """Made-up graphs: an upward import, a hidden import and a cycle are each reported."""
    rules = {"audit": {"core"}, "accounts": {"audit"}, "core": set()}
    upward = Import("policyhub.audit.models", "policyhub.accounts.models", "x.py:1", None)
    nested = Import("policyhub.accounts.services", "policyhub.audit.services", "y.py:2", "grant")
    ready = Import("policyhub.accounts.apps", "policyhub.audit.services", "z.py:3", "ready")
    back = Import("policyhub.audit.services", "policyhub.accounts.services", "w.py:4", None)
    assert forbidden([upward, nested], rules) == [
        "x.py:1: audit may not import accounts (policyhub.accounts.models)"
    ]
    assert hidden([nested, ready]) == ["y.py:2: imports policyhub.audit.services inside grant()"]
    assert cycles([nested, back]) == [["policyhub.accounts.services", "policyhub.audit.services"]]
    assert not acyclic({"audit": {"accounts"}, "accounts": {"audit"}})
    # A package __init__ importing a module that imports a sibling of that package's modules.
    package = "policyhub.releases.services"
    reexport = Import(package, f"{package}.runs", "a.py:1", None)
    runs = Import(f"{package}.runs", "policyhub.releases.tasks", "b.py:1", None)
    tasks = Import("policyhub.releases.tasks", f"{package}.publishing", "c.py:1", None)
    known = {package, f"{package}.runs", f"{package}.publishing", "policyhub.releases.tasks"}
    assert cycles([reexport, runs, tasks]) == []  # statement by statement, no cycle shows
    assert cycles(with_packages([reexport, runs, tasks], known)) == [
        sorted([package, f"{package}.runs", "policyhub.releases.tasks"])
    ]


@pytest.mark.parametrize("entry", ["policyhub.wsgi"])
def test_a_process_serving_fetches_loads_no_renderer(entry: str) -> None:
    """What the fetch path imports (the WSGI application builds the middleware chain, whose
    first member answers the fetches) leaves out the validator, the schema and tomlkit."""
    heavy = [
        "tomlkit",
        "policyhub.rendering.render",
        "policyhub.policies.validation",
        "policyhub.policies.schema",
        "policyhub.changes.services",
    ]
    script = (
        f"import sys, warnings; warnings.simplefilter('ignore'); import {entry}; "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL")  # SQLite: no listener thread to start
    }
    env["SECRET_KEY"] = env.get("SECRET_KEY", "architecture-test")
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
