"""One Strava read budget shared by every worker (Redis-backed), not one per process."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ela.ratelimit import SharedWindows, budget
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.processes import wait_for
from tests.conftest import WorkerFactory


def test_windows_grant_until_spent_then_name_the_reset(
    redis_client: Any, redis_prefix: str
) -> None:
    windows = SharedWindows(redis_client, f"{redis_prefix}rl", [(900, 3), (86400, 5)])
    t = datetime(2026, 11, 25, 10, 7, 30, tzinfo=UTC)
    assert [windows.acquire(t) for _ in range(3)] == [None, None, None]
    assert windows.acquire(t) == pytest.approx(7.5 * 60)  # to 10:15
    later = t + timedelta(minutes=8)  # 10:15:30, a new quarter hour
    assert [windows.acquire(later) for _ in range(2)] == [None, None]
    # The day's 5 are spent: wait for midnight, not for the next quarter hour.
    assert windows.acquire(later) == pytest.approx((13 * 60 + 44.5) * 60)


def test_provider_usage_is_folded_in(redis_client: Any, redis_prefix: str) -> None:
    windows = SharedWindows(redis_client, f"{redis_prefix}rl", [(900, 100), (86400, 1000)])
    t = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    windows.observe([99, 500], t)  # another client of the same app spent 99 already
    assert windows.acquire(t) is None
    assert windows.acquire(t) is not None
    windows.observe([10, 10], t)  # reports never lower a counter
    assert windows.acquire(t) is not None


def test_budget_parsing() -> None:
    assert budget({}, "B", (100, 1000)) == (100, 1000)
    assert budget({"B": "90,900"}, "B", (100, 1000)) == (90, 900)
    with pytest.raises(ValueError, match="B='ninety': expected two integers"):
        budget({"B": "ninety"}, "B", (1, 1))


def test_two_workers_share_one_budget(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    # Stay inside one quarter hour: the budget resets at :00/:15/:30/:45.
    left = 900 - time.time() % 900
    if left < 40:
        time.sleep(left + 1)
    with StravaEmulator(activities=10) as strava:
        env = {**strava.environ(), "ELA_STRAVA_READ_BUDGET": "3,100"}
        first = worker_factory(extra_env=env)
        second = worker_factory(extra_env=env)  # another process, same Redis and prefix
        results = [w.send("tasks.strava.athlete") for w in (first, second, first, second)]

        athlete = "/api/v3/athlete"

        def settled() -> bool:
            return sum(1 for r in results if r.ready()) >= 3 and strava.calls_to(athlete) >= 3

        wait_for(settled, 60, "three reads")
        # The fourth run is refused before it reads: count the reads once it has been.
        wait_for(
            lambda: "read budget is spent" in first.log() + second.log(),
            30,
            "a run to be refused for the spent budget",
        )
        reads = strava.calls_to(athlete)
    assert reads == 3, "four runs across two workers, budget three: one must wait"
    logs = first.log() + second.log()
    assert "read budget is spent" in logs and "Retry in" in logs
