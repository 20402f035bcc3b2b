"""Beat sends every tick exactly once: the scheduler driven by ``tick()`` and a clock we move.

Each test builds the real :class:`SingleBeatScheduler` on a client app of a test config, on the
real Redis (the test's own key prefix), and reads what it published straight from the env's
queue. "Killing" a beat is dropping the object without ``close()``: like a SIGKILL, it leaves
its lock and everything it wrote in Redis, and takes nothing else with it (the scheduler keeps
no file). The lock's 30 s TTL running out is the lock key deleted. Real ``celery beat``
processes are in test_reliability.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from beat_schedules import SCHEDULED_AT_HEADER
from beat_schedules.scheduler import RENEW_EVERY, SingleBeatScheduler, tick_run_id
from ela.sandbox.processes import base_environ, client_app
from ela.settings import broker_prefix
from tests.helpers import todoist_only

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a tick of "* * * * *"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 - timedelta(seconds=20))


@pytest.fixture
def beat_app(tmp_path: Path, redis_url: str, redis_prefix: str, clock: Clock) -> Iterator[Celery]:
    """The env's app with todoist_projects every minute, on our clock."""
    config = todoist_only(tmp_path / "c.yaml", schedules={"todoist_projects": "* * * * *"})
    environ = base_environ(
        redis_url, {"ELA_ENV": "dev", "ELA_CONFIG": str(config), "ELA_REDIS_PREFIX": redis_prefix}
    )
    app = client_app(environ)
    app.now = clock.now  # what beat and its crontabs read
    yield app
    app.close()


BeatFactory = Callable[[], SingleBeatScheduler]


@pytest.fixture
def new_beat(beat_app: Celery, tmp_path: Path) -> Iterator[BeatFactory]:
    made: list[SingleBeatScheduler] = []

    def factory() -> SingleBeatScheduler:
        # celery beat passes its -s file; the scheduler must never touch it.
        beat = SingleBeatScheduler(app=beat_app, schedule_filename=str(tmp_path / "schedule"))
        made.append(beat)
        return beat

    yield factory
    assert not list(tmp_path.glob("schedule*")), "beat wrote a schedule file"
    for beat in made:
        beat.__dict__.pop("producer", None)
        connection = beat.__dict__.pop("connection", None)
        if connection is not None:
            connection.release()


def queued(redis_client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """The headers of the todoist_projects runs on the queue, oldest first."""
    keys = broker_prefix("dev", {"ELA_REDIS_PREFIX": prefix})
    queue = redis_client.lrange(f"{keys}dev.todoist", 0, -1)
    headers = [json.loads(raw)["headers"] for raw in reversed(queue)]
    return [h for h in headers if h["task"] == "tasks.todoist.projects"]


def sent(redis_client: redis.Redis, prefix: str) -> list[str]:
    """The scheduled times of the todoist_projects runs on the queue, oldest first."""
    return [h[SCHEDULED_AT_HEADER] for h in queued(redis_client, prefix)]


def minute(offset: int) -> str:
    return (T0 + timedelta(minutes=offset)).isoformat()


def run(beat: SingleBeatScheduler, clock: Clock, *moments: datetime) -> None:
    """Call ``tick()`` at each moment, as beat's loop would (at least every RENEW_EVERY)."""
    for moment in moments:
        clock.set(moment)
        assert beat.tick() <= RENEW_EVERY


def seconds(*offsets: float) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in offsets]


def lock_runs_out(redis_client: redis.Redis, beat: SingleBeatScheduler) -> None:
    """The dead leader's lock reaches its TTL."""
    redis_client.delete(beat.lock.key)


def test_a_leader_sends_each_tick_once_stamped_with_its_minute_and_run_id(
    new_beat: BeatFactory, clock: Clock, redis_client: redis.Redis, redis_prefix: str
) -> None:
    beat = new_beat()
    # Started at 09:59:40: the 09:59 tick is history (as in Celery), 10:00 and 10:01 are sent.
    run(beat, clock, *seconds(-20, -10, 0, 0.5, 10, 59.9, 60, 61, 70))
    assert sent(redis_client, redis_prefix) == [minute(0), minute(1)]
    first, second = queued(redis_client, redis_prefix)
    assert first["id"] == tick_run_id("dev", "todoist_projects", T0) != second["id"]
    # It expires when the tick would have (the job's gap), not a gap after it was sent.
    assert first["expires"] == (T0 + timedelta(seconds=60)).isoformat()


def test_killed_at_50_restarted_1_s_later_the_next_tick_is_sent_once(
    new_beat: BeatFactory, clock: Clock, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The new beat stands by while the dead one's lock lives, across the tick; when it takes
    over it sends the tick nobody sent (Celery's schedulers skipped it)."""
    old = new_beat()
    run(old, clock, *seconds(-20, -10))  # killed at 09:59:50
    new = new_beat()
    run(new, clock, *seconds(-9, -4, 0, 1, 6, 11, 16))  # standing by: the lock lives on
    assert not new.leading and sent(redis_client, redis_prefix) == []
    lock_runs_out(redis_client, old)
    run(new, clock, *seconds(21, 26, 31, 60, 65))
    assert sent(redis_client, redis_prefix) == [minute(0), minute(1)]


def test_killed_5_s_after_a_tick_restarted_40_s_later_the_tick_is_not_resent(
    new_beat: BeatFactory, clock: Clock, redis_client: redis.Redis, redis_prefix: str
) -> None:
    old = new_beat()
    run(old, clock, *seconds(-20, -10, 0, 5))  # sent 10:00, killed at 10:00:05
    assert sent(redis_client, redis_prefix) == [minute(0)]
    lock_runs_out(redis_client, old)
    new = new_beat()
    run(new, clock, *seconds(45, 55, 60, 65))
    assert sent(redis_client, redis_prefix) == [minute(0), minute(1)]


@pytest.mark.parametrize(
    ("back_at", "expected"),
    [
        (30, [0]),  # 30 s after the tick: inside its expiry (60 s), sent late, once
        (70, [1]),  # 70 s: 10:00 expired (dropped, as a backed-up queue would), 10:01 sent
    ],
)
def test_beat_down_across_a_tick_sends_it_late_within_its_expiry(
    new_beat: BeatFactory,
    clock: Clock,
    redis_client: redis.Redis,
    redis_prefix: str,
    back_at: int,
    expected: list[int],
) -> None:
    old = new_beat()
    run(old, clock, *seconds(-20, -10))  # killed at 09:59:50
    lock_runs_out(redis_client, old)
    new = new_beat()
    run(new, clock, *seconds(back_at, back_at + 5))
    assert sent(redis_client, redis_prefix) == [minute(m) for m in expected]
    [message] = queued(redis_client, redis_prefix)
    # Named for its own minute and id, whenever it went out.
    assert message["id"] == tick_run_id(
        "dev", "todoist_projects", T0 + timedelta(minutes=expected[0])
    )


def test_two_beats_send_each_tick_once_and_the_standby_takes_over(
    new_beat: BeatFactory, clock: Clock, redis_client: redis.Redis, redis_prefix: str
) -> None:
    first, second = new_beat(), new_beat()
    for moment in seconds(-20, -10, 0, 1, 10, 30, 60, 61):
        run(first, clock, moment)
        run(second, clock, moment)
    assert sent(redis_client, redis_prefix) == [minute(0), minute(1)]
    assert [first.leading, second.leading] == [True, False]
    lock_runs_out(redis_client, first)  # the leader died at 10:01:01
    run(second, clock, *seconds(91, 120))
    assert second.leading
    assert sent(redis_client, redis_prefix) == [minute(0), minute(1), minute(2)]


def test_a_tick_claimed_but_not_published_is_sent_by_the_next_leader_under_its_id(
    new_beat: BeatFactory,
    clock: Clock,
    redis_client: redis.Redis,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The leader claims 10:00, then its publish fails (or it dies before it could). The next
    leader sends it, with the run id the first would have used."""
    old = new_beat()
    run(old, clock, *seconds(-20, -10))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the broker went away mid-publish")

    old.apply_async = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        run(old, clock, *seconds(0))
    assert "Message Error" in caplog.text and sent(redis_client, redis_prefix) == []
    lock_runs_out(redis_client, old)
    new = new_beat()
    run(new, clock, *seconds(20))
    assert sent(redis_client, redis_prefix) == [minute(0)]
    [message] = queued(redis_client, redis_prefix)
    assert message["id"] == tick_run_id("dev", "todoist_projects", T0)


def test_a_wiped_redis_starts_the_ledger_again_from_now(
    new_beat: BeatFactory, clock: Clock, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Flushing Redis loses queued work at most: beat goes on from the next tick, and does not
    replay the ones it can no longer know it sent."""
    beat = new_beat()
    run(beat, clock, *seconds(-20, 0))
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    run(beat, clock, *seconds(10, 30, 60))
    assert sent(redis_client, redis_prefix) == [minute(1)]


@pytest.mark.timeout(10)
def test_the_latest_tick_is_found_whatever_the_clock_does_meanwhile() -> None:
    """Celery's remaining_estimate reads the clock itself: once it had moved more than half a
    second past the `now` beat asked about (slow sends within one tick), the walk to the
    latest tick never got past a tick and beat hung."""
    from celery.beat import ScheduleEntry

    from beat_schedules import JobCrontab
    from beat_schedules.scheduler import latest_tick

    now = T0 + timedelta(seconds=20)
    schedule = JobCrontab(zone="Europe/Paris", nowfun=lambda: now + timedelta(seconds=2))
    entry = ScheduleEntry(name="todoist_projects", schedule=schedule)
    assert latest_tick(entry, now, now - timedelta(minutes=5)) == T0.replace(second=0)
    assert latest_tick(entry, now, T0) is None  # no tick after T0 up to now
