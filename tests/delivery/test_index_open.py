"""Every web process opens the host's delivery index when it boots, so a server's workers open a
new index at the same moment. Each must get it: a worker that cannot use the index answers from
PostgreSQL alone for a minute, and cannot answer at all through a database outage."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from policyhub.delivery.index import HostIndex

PROCESSES = 4
ROUNDS = 15


def _open(path: Path, start: Barrier, results: multiprocessing.Queue[str]) -> None:
    start.wait()
    try:
        HostIndex(path).close()
        results.put("opened")
    except Exception as error:  # what the test reports: any failure to open
        results.put(f"{type(error).__name__}: {error}")


def test_workers_opening_a_new_index_at_once_all_get_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "delivery.sqlite3"
        start = context.Barrier(PROCESSES)
        results: multiprocessing.Queue[str] = context.Queue()
        workers = [
            context.Process(target=_open, args=(path, start, results)) for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        outcomes += [results.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
    failures = [outcome for outcome in outcomes if outcome != "opened"]
    assert not failures, f"{len(failures)} of {len(outcomes)} opens failed: {failures[:3]}"
