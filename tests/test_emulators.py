"""What the benchmark reads off the emulators: added latency, calls in flight, connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from ela.sandbox.emulators.todoist import TodoistEmulator


@pytest.fixture
def emulator() -> Iterator[TodoistEmulator]:
    with TodoistEmulator(projects=3, tasks=3) as em:
        assert isinstance(em, TodoistEmulator)
        yield em


def get(em: TodoistEmulator, session: requests.Session | None = None) -> requests.Response:
    response = (session or requests).get(
        f"{em.api_url}/projects", headers={"Authorization": f"Bearer {em.token}"}, timeout=5
    )
    assert response.status_code == 200
    return response


def test_latency_delays_each_answer_and_concurrent_calls_overlap(emulator: TodoistEmulator) -> None:
    emulator.latency = 0.2
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        get(emulator)

    began = time.perf_counter()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began

    assert 0.2 <= elapsed < 0.6  # four delayed answers at once, not one after another
    assert emulator.peak_in_flight == 4
    emulator.reset_calls()
    assert emulator.peak_in_flight == 0


def test_a_kept_alive_session_is_one_connection(emulator: TodoistEmulator) -> None:
    before = emulator.connections
    with requests.Session() as session:
        for _ in range(5):
            get(emulator, session)
    get(emulator)  # no session: a connection of its own
    assert emulator.connections - before == 2
