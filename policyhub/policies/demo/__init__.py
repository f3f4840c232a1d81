"""The demo organisation's policy document: `seed_demo` creates it, tests and benchmarks use it
as a realistic, complete example (every provider kind, nested teams, a support window)."""

from pathlib import Path

ACME = Path(__file__).with_name("acme.toml")
