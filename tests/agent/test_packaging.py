"""The agent as a distribution: its metadata, its entry points, its dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import policyhub_agent

PACKAGE = Path(policyhub_agent.__file__).parent


def test_the_distribution_has_the_packages_version_and_only_cryptography_as_dependency() -> None:
    assert importlib.metadata.version("policyhub-agent") == policyhub_agent.__version__ == "0.3.2"
    assert importlib.metadata.requires("policyhub-agent") == ["cryptography==50.0.2"]
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="policyhub-agent")
    assert script.value == "policyhub_agent.cli:main"


def test_python_dash_m_runs_the_agent() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "policyhub_agent", "--version"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "policyhub-agent 0.3.2")


def test_the_agent_imports_only_the_standard_library_and_cryptography() -> None:
    imported = set()
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    assert "cryptography" in imported and "policyhub_agent" in imported
    outside = imported - set(sys.stdlib_module_names) - {"cryptography", "policyhub_agent"}
    assert outside == set()
