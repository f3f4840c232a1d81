"""Every web process opens the host's delivery index when it boots, so a server's workers open a
new index at the same moment. Each must get it: a worker that cannot use the index answers from
PostgreSQL alone for a minute, and cannot answer at all through a database outage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.codex.harness import REPO_ROOT

# Run in a fresh interpreter: forking the test process, whose other threads may hold locks at
# that moment, can leave a child stuck; a process with a single thread forks safely.
OPENERS = """
import json, multiprocessing, sys
from pathlib import Path
from policyhub.delivery.index import HostIndex

def open_index(path, start, results):
    start.wait()
    try:
        HostIndex(path).close()
        results.put("opened")
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")

if __name__ == "__main__":
    root, processes, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    context = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(rounds):
        start, results = context.Barrier(processes), context.Queue()
        path = root / f"round-{round_}" / "delivery.sqlite3"
        openers = [
            context.Process(target=open_index, args=(path, start, results))
            for _ in range(processes)
        ]
        for opener in openers:
            opener.start()
        outcomes += [results.get(timeout=30) for _ in openers]
        for opener in openers:
            opener.join(timeout=30)
    print(json.dumps(outcomes))
"""

PROCESSES = 4
ROUNDS = 40


def test_workers_opening_a_new_index_at_once_all_get_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OPENERS, str(tmp_path), str(PROCESSES), str(ROUNDS)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = json.loads(done.stdout)
    assert len(outcomes) == PROCESSES * ROUNDS
    failures = [outcome for outcome in outcomes if outcome != "opened"]
    assert not failures, f"{len(failures)} of {len(outcomes)} opens failed: {failures[:3]}"
