"""ela backfill: chunks, run ids, pacing, resuming; landing inline and through a worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ela import config as config_module
from ela.cli import backfill as cli_backfill
from ela.cli import main
from ela.config import IngestionConfig
from ela.connectors.garmin import CHUNK_DAYS as GARMIN_CHUNK_DAYS
from ela.connectors.pacing import SLACK_S, BackfillProfile
from ela.connectors.strava import CHUNK_LIMIT as STRAVA_CHUNK_LIMIT
from ela.connectors.strava import read_quotas
from ela.errors import RetriableError
from ela.ops import backfill as bf
from ela.pipeline import Overrides, run_job
from ela.sandbox.configs import write_config
from ela.sandbox.emulators.garmin import GarminEmulator
from ela.sandbox.emulators.server import Fault
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket, get_json
from ela.state import read_cursor
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import run_id_of
from tests.test_garmin import heart_rate_landed

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
GARMIN_LAST_DAY = date(2025, 6, 30)
TODAY = date(2025, 7, 1)
JSON = list[dict[str, Any]]


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["backfill", *args], env=env)


def landed(bucket: LocalBucket, runs: list[dict[str, Any]]) -> JSON:
    """The records of runs' landing objects, in order (a manifest's or a --json chunk's)."""
    names = [o["name"] if isinstance(o, dict) else o for run in runs for o in run["objects"]]
    return [record for name in names for record in read_jsonl(bucket.get_bytes(name))]


def epoch(day: date) -> int:
    return int(bf.midnight(day).timestamp())


# -- the plan (pure) ---------------------------------------------------------------------------


def test_a_window_is_cut_into_chunks_aligned_on_since() -> None:
    plan = bf.plan(CONFIG, "garmin_sleep", date(2025, 1, 1), date(2025, 4, 5), today=TODAY)
    assert plan.chunk_days == GARMIN_CHUNK_DAYS == 30
    assert [(c.first, c.last) for c in plan.chunks] == [
        (date(2025, 1, 1), date(2025, 1, 30)),
        (date(2025, 1, 31), date(2025, 3, 1)),
        (date(2025, 3, 2), date(2025, 3, 31)),
        (date(2025, 4, 1), date(2025, 4, 5)),  # the rest: 5 days
    ]
    assert sum(c.days for c in plan.chunks) == (date(2025, 4, 5) - date(2025, 1, 1)).days + 1
    assert [c.index for c in plan.chunks] == [1, 2, 3, 4]
    assert {c.count for c in plan.chunks} == {4}


@pytest.mark.parametrize(
    ("since", "until", "days", "count", "last_days"),
    [
        (date(2025, 3, 1), date(2025, 5, 29), 30, 3, 30),  # exactly 90 days
        (date(2025, 3, 1), date(2025, 3, 1), 30, 1, 1),  # a single day
        (date(2025, 3, 1), date(2025, 3, 10), 1, 10, 1),
        (date(2024, 1, 1), date(2024, 12, 31), 366, 1, 366),  # leap year, one Garmin run
        (date(2024, 1, 1), date(2025, 1, 1), 7, 53, 3),  # 367 days = 52 weeks + 3
    ],
)
def test_chunk_counts(since: date, until: date, days: int, count: int, last_days: int) -> None:
    plan = bf.plan(CONFIG, "garmin_heart_rate", since, until, days, today=TODAY)
    assert len(plan.chunks) == count
    assert plan.chunks[-1].days == last_days
    for before, after in zip(plan.chunks, plan.chunks[1:], strict=False):
        assert after.first == before.last + timedelta(days=1)  # no gap, no overlap


def test_windows_as_each_connector_reads_them() -> None:
    strava = bf.plan(CONFIG, "strava_activities", date(2025, 1, 1), date(2025, 1, 31), today=TODAY)
    garmin = bf.plan(CONFIG, "garmin_activities", date(2025, 1, 1), date(2025, 1, 31), today=TODAY)
    s1, s2 = strava.chunks
    g1, _ = garmin.chunks
    # Strava's `before` excludes `until`: the next midnight. Garmin includes `until`'s day.
    assert (s1.since, s1.until) == (bf.midnight(date(2025, 1, 1)), bf.midnight(date(2025, 1, 31)))
    assert (s2.since, s2.until) == (bf.midnight(date(2025, 1, 31)), bf.midnight(date(2025, 2, 1)))
    assert (g1.since, g1.until) == (bf.midnight(date(2025, 1, 1)), bf.midnight(date(2025, 1, 30)))
    # Either way the landing object is stamped with the window's end.
    assert s1.scheduled_at == g1.scheduled_at == bf.midnight(date(2025, 1, 31))
    assert s1.task_kwargs("strava_activities", strava.profile.limit) == {
        "job": "strava_activities",
        "since": "2025-01-01T00:00:00+00:00",
        "until": "2025-01-31T00:00:00+00:00",
        "scheduled_at": "2025-01-31T00:00:00+00:00",
        "limit": STRAVA_CHUNK_LIMIT,
    }
    assert "limit" not in g1.task_kwargs("garmin_activities", garmin.profile.limit)
    assert (strava.task, strava.queue, strava.incremental) == (
        "tasks.strava.activities",
        "dev.strava",
        True,
    )


def test_run_ids_are_fixed_by_env_job_and_window() -> None:
    def ids(config: IngestionConfig, job: str, since: date, until: date) -> list[str]:
        return [c.run_id for c in bf.plan(config, job, since, until, today=TODAY).chunks]

    first = ids(CONFIG, "garmin_sleep", date(2025, 1, 1), date(2025, 3, 31))
    assert first == ids(CONFIG, "garmin_sleep", date(2025, 1, 1), date(2025, 3, 31))
    assert len(set(first)) == 3 and all(uuid.UUID(i).version == 5 for i in first)
    # A longer window keeps the chunks it shares (aligned on the same --since).
    assert ids(CONFIG, "garmin_sleep", date(2025, 1, 1), date(2025, 5, 31))[:3] == first
    assert set(first).isdisjoint(
        ids(CONFIG, "garmin_heart_rate", date(2025, 1, 1), date(2025, 3, 31))
    )
    prd = config_module.load(REPO / "ingestion-config-prd.yaml")
    assert set(first).isdisjoint(ids(prd, "garmin_sleep", date(2025, 1, 1), date(2025, 3, 31)))
    # Eight distinct leading characters: the landing object names (run8) stay distinct too.
    assert len({i.replace("-", "")[:8] for i in first}) == 3


def test_until_defaults_to_today() -> None:
    plan = bf.plan(CONFIG, "garmin_sleep", date(2025, 6, 20), today=TODAY)
    assert plan.last == TODAY and plan.chunks[-1].last == TODAY


@pytest.mark.parametrize(
    ("job", "since", "until", "days", "message"),
    [
        ("spotify_recently_played", date(2025, 1, 1), None, None, "cannot be backfilled"),
        ("todoist_tasks", date(2025, 1, 1), None, None, "jobs that can be backfilled: strava"),
        ("nope", date(2025, 1, 1), None, None, "unknown job 'nope'"),
        ("garmin_sleep", date(2025, 3, 1), date(2025, 2, 1), None, "is after --until"),
        ("garmin_sleep", date(2025, 3, 1), date(2025, 7, 2), None, "in the future"),
        ("garmin_sleep", date(2024, 1, 1), None, 367, "1 to 366 days"),
    ],
)
def test_bad_requests_are_one_line_errors(
    job: str, since: date, until: date | None, days: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        bf.plan(CONFIG, job, since, until, days, today=TODAY)
    assert "\n" not in str(caught.value)


def test_a_job_that_cannot_be_backfilled_names_those_that_can() -> None:
    result = invoke({}, "spotify_top_tracks", "--since", "2025-01-01")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ela: spotify_top_tracks cannot be backfilled (tasks.spotify.top_tracks takes no date "
        "window); jobs that can be backfilled: strava_activities, strava_laps, strava_streams, "
        "garmin_activities, garmin_sleep, garmin_heart_rate, garmin_steps, garmin_stress, "
        "garmin_hrv, garmin_training_status, garmin_floors, garmin_body_battery, garmin_weight, "
        "todoist_completed_tasks"
    )


# -- pacing (pure) -----------------------------------------------------------------------------


class FakeClock:
    """Epoch seconds that move only when something sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_strava_quotas_leave_headroom_for_scheduled_runs() -> None:
    short, daily = read_quotas()
    assert (short.period_s, short.limit, short.budget) == (900, 100, 90)
    assert (daily.period_s, daily.limit, daily.budget) == (86400, 1000, 900)


def test_pacer_waits_for_the_next_window_when_the_budget_is_spent() -> None:
    clock = FakeClock(datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC).timestamp())
    pacer = bf.Pacer(read_quotas(), clock=clock.time, sleep=clock.sleep)
    assert pacer.delay(1) == (0.0, None)
    pacer.record(89)
    assert pacer.delay(1) == (0.0, None)
    pacer.record(1)
    wait, quota = pacer.delay(1)
    assert quota is not None and quota.name == "Strava 15-minute"
    assert wait == 450 + SLACK_S  # 10:07:30 → 10:15:00, and a second past it
    pacer.pause(wait)
    assert pacer.delay(1) == (0.0, None)  # a new quarter hour
    assert pacer.used(read_quotas()[1]) == 90  # still today's


def test_pacer_waits_for_midnight_when_the_day_is_spent() -> None:
    clock = FakeClock(datetime(2025, 6, 1, 20, 0, tzinfo=UTC).timestamp())
    pacer = bf.Pacer(read_quotas(), clock=clock.time, sleep=clock.sleep)
    for _ in range(10):
        pacer.record(90)
        clock.now += 900
    wait, quota = pacer.delay(1)
    assert quota is not None and quota.name == "Strava daily"
    assert clock.now + wait == datetime(2025, 6, 2, tzinfo=UTC).timestamp() + SLACK_S


def test_a_chunk_bigger_than_a_window_starts_in_a_fresh_one() -> None:
    clock = FakeClock(datetime(2025, 6, 1, 10, 0, tzinfo=UTC).timestamp())
    pacer = bf.Pacer(read_quotas(), clock=clock.time, sleep=clock.sleep)
    assert pacer.delay(500) == (0.0, None)  # nothing spent yet: go
    pacer.record(1)
    assert pacer.delay(500)[0] == 900 + SLACK_S


def profile(service: str, data_type: str) -> BackfillProfile:
    found = bf.backfill_profile(service, data_type)
    assert found is not None
    return found


def test_estimates() -> None:
    strava = profile("strava", "activities")
    assert [strava.estimate(30, n) for n in (0, 199, 200, 450)] == [1, 1, 2, 3]
    assert profile("garmin", "heart_rate").estimate(30, 0) == 31  # a call a day + profile
    assert profile("garmin", "sleep").estimate(5, 5) == 6
    assert profile("garmin", "activities").estimate(30, 45) == 4


# -- Garmin: one record a day over ~90 days ------------------------------------------------------


@pytest.fixture
def garmin(tmp_path: Path) -> Iterator[tuple[GarminEmulator, dict[str, str]]]:
    with GarminEmulator(last_day=GARMIN_LAST_DAY) as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(TokenStore(tmp_path / "tokens"))
        env = em.environ() | {
            "ELA_TOKEN_DIR": str(tmp_path / "tokens"),
            "ELA_BUCKET_URL": (tmp_path / "bucket").as_uri(),
        }
        yield em, env


def test_garmin_heart_rate_backfill_lands_one_record_per_day(
    garmin: tuple[GarminEmulator, dict[str, str]], tmp_path: Path
) -> None:
    em, env = garmin
    since, until = date(2025, 3, 1), date(2025, 5, 29)  # 90 days: three chunks
    days = [since + timedelta(days=n) for n in range(90)]

    result = invoke(
        env, "garmin_heart_rate", "--since", f"{since}", "--until", f"{until}", "--inline", "--json"
    )
    assert result.exit_code == 0, result.output
    report = _json(result)
    assert report["complete"] and report["totals"]["succeeded"] == 3

    bucket = LocalBucket(tmp_path / "bucket")
    records = landed(bucket, report["chunks"])
    assert records == [heart_rate_landed(em, d) for d in days]  # the emulator's, oldest first
    assert [r["calendarDate"] for r in records] == [d.isoformat() for d in days]  # no gap/dupe
    assert em.calls_to("dailyHeartRate") == 90  # one call per day
    # Stamped with each window's end, so a re-run names its objects the same way.
    assert sorted(o.name for o in bucket.list("garmin/landing/")) == [
        f"garmin/landing/{end:%Y_%m_%d}_00_00_{c['run_id'][:8]}_garmin_heart_rate.jsonl"
        for c in report["chunks"]
        for end in [date.fromisoformat(c["last"]) + timedelta(days=1)]
    ]
    for chunk in report["chunks"]:
        manifest = get_json(bucket, f"garmin/_runs/garmin_heart_rate/{chunk['run_id']}.json")
        assert manifest["window"]["since"] == chunk["since"]

    # The same command again: every chunk is recognised by its manifest, nothing is fetched.
    em.reset_calls()
    again = invoke(
        env, "garmin_heart_rate", "--since", f"{since}", "--until", f"{until}", "--inline", "--json"
    )
    assert again.exit_code == 0, again.output
    assert _json(again)["totals"]["already_committed"] == 3
    assert em.calls == []
    assert len(list(bucket.list("garmin/landing/"))) == 3


def _json(result: Result) -> dict[str, Any]:
    import json

    value: dict[str, Any] = json.loads(result.stdout)
    return value


# -- Strava: resuming, cursors, pacing -----------------------------------------------------------

STRAVA_SINCE, STRAVA_UNTIL = date(2025, 1, 1), date(2025, 5, 31)  # 151 days: six chunks
STRAVA_ARGS = ("strava_activities", "--since", f"{STRAVA_SINCE}", "--until", f"{STRAVA_UNTIL}")


def strava_env(em: StravaEmulator, tmp_path: Path) -> dict[str, str]:
    return em.environ() | {
        "ELA_TOKEN_DIR": str(tmp_path / "tokens"),
        "ELA_BUCKET_URL": (tmp_path / "bucket").as_uri(),
    }


def in_window(em: StravaEmulator, since: date, until: date) -> JSON:
    """What Strava lists for UTC days since..until, both included (its after/before exclude)."""
    return em.window(after=epoch(since) - 1, before=epoch(until + timedelta(days=1)))


def list_calls(em: StravaEmulator) -> list[dict[str, str]]:
    return [q for _, path, q in em.calls if path == "/api/v3/athlete/activities"]


@pytest.fixture
def strava(tmp_path: Path) -> Iterator[tuple[StravaEmulator, dict[str, str]]]:
    with StravaEmulator(activities=300) as em:
        assert isinstance(em, StravaEmulator)
        yield em, strava_env(em, tmp_path)


def test_a_failed_chunk_stops_the_backfill_and_a_rerun_fetches_only_the_rest(
    strava: tuple[StravaEmulator, dict[str, str]], tmp_path: Path
) -> None:
    em, env = strava
    plan = bf.plan(CONFIG, "strava_activities", STRAVA_SINCE, STRAVA_UNTIL)
    assert len(plan.chunks) == 6
    em.inject(Fault(status=404, path="/athlete/activities", after=3))  # chunk 4's read fails

    first = invoke(env, *STRAVA_ARGS, "--inline")

    assert first.exit_code == 1
    assert (
        "ela: chunk 4/6 (2025-04-01..2025-04-30) failed: strava: HTTP 404 from "
        "/api/v3/athlete/activities"
    ) in first.output
    assert "the 3 chunks before it stay committed; run the same command again" in first.output
    assert len(list_calls(em)) == 4
    em.reset_calls()

    second = invoke(env, *STRAVA_ARGS, "--inline", "--json")

    assert second.exit_code == 0, second.output
    report = _json(second)
    assert report["totals"] | {"records": 0} == {
        "chunks": 6,
        "succeeded": 3,
        "already_committed": 3,
        "failed": 0,
        "remaining": 0,
        "records": 0,
        "api_calls": report["totals"]["api_calls"],
    }
    # Only the three remaining chunks reached Strava, each with its own window.
    assert [int(q["after"]) + 1 for q in list_calls(em)] == [
        epoch(c.first) for c in plan.chunks[3:]
    ]
    bucket = LocalBucket(tmp_path / "bucket")
    records = landed(bucket, report["chunks"])
    assert records == in_window(em, STRAVA_SINCE, STRAVA_UNTIL)
    assert len({r["id"] for r in records}) == len(records) > 60


def test_ctrl_c_between_chunks_then_the_same_command_resumes(
    strava: tuple[StravaEmulator, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    em, env = strava
    bucket = LocalBucket(tmp_path / "bucket")
    plan = bf.plan(CONFIG, "strava_activities", STRAVA_SINCE, STRAVA_UNTIL)
    inline = bf.inline_runner(CONFIG, plan, bucket=bucket, environ=env)

    def interrupted(chunk: bf.Chunk, attempt: int) -> dict[str, Any]:
        if chunk.index == 3:
            raise KeyboardInterrupt
        return inline(chunk, attempt)

    with pytest.raises(SystemExit) as stopped:
        cli_backfill.execute(plan, interrupted)
    assert stopped.value.code == 130
    assert "interrupted after 2 of 6 chunks" in capsys.readouterr().err
    assert len(list_calls(em)) == 2
    em.reset_calls()

    cli_backfill.execute(plan, inline)

    out = capsys.readouterr().out
    assert "4 chunks landed, 2 already committed, 0 failed" in out
    assert [int(q["after"]) + 1 for q in list_calls(em)] == [
        epoch(c.first) for c in plan.chunks[2:]
    ]
    manifests = [
        get_json(bucket, f"strava/_runs/strava_activities/{c.run_id}.json") for c in plan.chunks
    ]
    assert landed(bucket, manifests) == in_window(em, STRAVA_SINCE, STRAVA_UNTIL)


def test_a_backfill_never_rewinds_the_cursor_nor_makes_the_next_run_skip_the_gap(
    strava: tuple[StravaEmulator, dict[str, str]], tmp_path: Path
) -> None:
    em, env = strava
    bucket = LocalBucket(tmp_path / "bucket")
    everything = em.window(after=0)

    def scheduled(name: str, limit: int | None = None) -> dict[str, Any]:
        return run_job(
            CONFIG,
            "strava_activities",
            run_id=run_id_of(name),
            scheduled_at=datetime(2025, 6, 1, tzinfo=UTC),
            overrides=Overrides(limit=limit),
            bucket=bucket,
            environ=env,
        )

    cursor = scheduled("scheduled-1", limit=50)["cursor_after"]  # the 50 oldest only
    assert cursor == int(datetime.fromisoformat(everything[49]["start_date"]).timestamp())
    cursor_day = datetime.fromtimestamp(cursor, UTC).date()

    # A window wholly before the cursor, then one wholly after it: the cursor stays put.
    before = invoke(
        env,
        "strava_activities",
        "--since",
        everything[0]["start_date"][:10],
        "--until",
        f"{cursor_day - timedelta(days=10)}",
        "--inline",
    )
    assert before.exit_code == 0, before.output
    after = invoke(env, *STRAVA_ARGS, "--inline")
    assert after.exit_code == 0, after.output
    assert read_cursor(bucket, "strava", "strava_activities") == cursor

    # So the next scheduled run still lands everything after the cursor, the gap included, and
    # not again what the window after the cursor landed (its ids are in the job's state).
    rest = scheduled("scheduled-2")
    since, until = STRAVA_SINCE.isoformat(), STRAVA_UNTIL.isoformat()
    window = [a for a in everything[50:] if since <= a["start_date"][:10] <= until]
    assert window
    assert landed(bucket, [rest]) == [a for a in everything[50:] if a not in window]
    assert read_cursor(bucket, "strava", "strava_activities") == rest["cursor_after"]
    newest = read_cursor(bucket, "strava", "strava_activities")

    # Backfilling the past after that leaves the newest cursor alone.
    again = invoke(
        env, "strava_activities", "--since", "2024-06-01", "--until", "2024-07-31", "--inline"
    )
    assert again.exit_code == 0, again.output
    assert read_cursor(bucket, "strava", "strava_activities") == newest


def test_pacing_keeps_each_15_minute_window_under_its_budget(tmp_path: Path) -> None:
    # Strava's windows on a fake clock shared by the emulator and the pacer: no real waiting.
    clock = FakeClock(time.time() // 900 * 900 + 60)
    with StravaEmulator(
        activities=300, limits=(5, 1000), read_limits=(5, 1000), clock=clock.time
    ) as em:
        assert isinstance(em, StravaEmulator)
        bucket = LocalBucket(tmp_path / "bucket")
        plan = bf.plan(CONFIG, "strava_activities", date(2024, 6, 1), STRAVA_UNTIL)
        assert len(plan.chunks) == 13
        quotas = read_quotas(short=5, daily=1000)
        assert quotas[0].budget == 4  # room left for the scheduled runs
        pacer = bf.Pacer(quotas, clock=clock.time, sleep=clock.sleep)
        events: list[bf.Event] = []
        reads_in_window: list[int] = []
        starts: list[float] = []

        def watch(event: bf.Event) -> None:
            events.append(event)
            if event.kind == "start":
                starts.append(clock.now)
            if event.kind == "done":
                reads_in_window.append(em.usage()[0])

        runner = bf.inline_runner(CONFIG, plan, bucket=bucket, environ=strava_env(em, tmp_path))
        state = bf.run_backfill(bf.Backfill(plan), runner, pacer=pacer, on_event=watch)

        assert state.complete, state.results[-1]
        assert max(reads_in_window) <= 4  # never more than the budget in one quarter hour
        assert not [e for e in events if e.kind == "retry"]  # so Strava never refused a read
        waits = [e for e in events if e.kind == "wait"]
        assert len(waits) >= 3 and clock.sleeps == [e.seconds for e in waits]
        # Every wait ends a second into a new quarter hour, and the chunk starts right then.
        after_waits = [starts[i] for i, e in enumerate(_starts_after_waits(events)) if e]
        assert after_waits and all(t % 900 == SLACK_S for t in after_waits)
        assert clock.now - (time.time() // 900 * 900 + 60) < 4 * 3600  # minutes, not hours
        records = landed(bucket, [r.as_dict() for r in state.results])
        assert records == in_window(em, date(2024, 6, 1), STRAVA_UNTIL)


def _starts_after_waits(events: list[bf.Event]) -> list[bool]:
    """For each start event: did a wait come right before it?"""
    flags = []
    previous: bf.Event | None = None
    for event in events:
        if event.kind == "start":
            flags.append(previous is not None and previous.kind == "wait")
        previous = event
    return flags


def test_a_rate_limited_chunk_waits_as_told_and_runs_again_under_the_same_id(
    strava: tuple[StravaEmulator, dict[str, str]], tmp_path: Path
) -> None:
    em, env = strava
    clock = FakeClock(time.time())
    bucket = LocalBucket(tmp_path / "bucket")
    plan = bf.plan(CONFIG, "strava_activities", date(2025, 3, 1), STRAVA_UNTIL)
    em.inject(Fault(status=429, retry_after=120, path="/athlete/activities", after=1))
    pacer = bf.Pacer(plan.profile.quotas, clock=clock.time, sleep=clock.sleep)
    events: list[bf.Event] = []

    runner = bf.inline_runner(CONFIG, plan, bucket=bucket, environ=env)
    state = bf.run_backfill(bf.Backfill(plan), runner, pacer=pacer, on_event=events.append)

    assert state.complete
    retries = [(e.chunk.index, e.seconds) for e in events if e.kind == "retry"]
    assert retries == [(2, 120 + SLACK_S)]  # Strava's Retry-After, then a second
    assert clock.sleeps == [120 + SLACK_S]
    assert [r.attempts for r in state.results] == [1, 2, 1, 1]
    second = plan.chunks[1]
    assert [q["after"] for q in list_calls(em)].count(str(epoch(second.first) - 1)) == 2
    assert list(bucket.list("strava/errors/")) == []  # not a final attempt: no error object
    assert landed(bucket, [r.as_dict() for r in state.results]) == in_window(
        em, date(2025, 3, 1), STRAVA_UNTIL
    )


def test_retriable_errors_give_up_after_max_attempts() -> None:
    plan = bf.plan(CONFIG, "garmin_sleep", date(2025, 1, 1), date(2025, 1, 10), today=TODAY)
    clock = FakeClock(0.0)
    calls: list[int] = []

    def flaky(chunk: bf.Chunk, attempt: int) -> dict[str, Any]:
        calls.append(attempt)
        raise RetriableError("garmin: HTTP 503")

    pacer = bf.Pacer(clock=clock.time, sleep=clock.sleep)
    state = bf.run_backfill(bf.Backfill(plan), flaky, pacer=pacer, max_attempts=4)
    assert calls == [0, 1, 2, 3]
    assert clock.sleeps == [30.0, 60.0, 120.0]  # backoff when no Retry-After is given
    failed = state.failed
    assert failed is not None and failed.error == "garmin: HTTP 503 (after 4 attempts)"


# -- through a real worker -----------------------------------------------------------------------


def ela_backfill(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``ela backfill ARGS`` in its own process, as an operator runs it next to the workers."""
    return subprocess.run(
        [sys.executable, "-m", "ela.cli", "backfill", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_strava_backfill_through_a_worker_lands_exactly_the_window(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    with StravaEmulator(activities=300) as em:
        assert isinstance(em, StravaEmulator)
        handle = worker_factory(extra_env=em.environ() | {"ELA_TOKEN_DIR": str(tmp_path / "t")})
        bucket = LocalBucket(tmp_path / "bucket")  # the worker's ELA_BUCKET_URL
        cursor = handle.call("tasks.strava.activities", timeout=60)["cursor_after"]
        em.reset_calls()

        result = ela_backfill(handle.environ, *STRAVA_ARGS, "--json", "--timeout", "60")

        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["totals"]["succeeded"] == 6
        assert landed(bucket, report["chunks"]) == in_window(em, STRAVA_SINCE, STRAVA_UNTIL)
        assert len(list_calls(em)) == 6  # one read per chunk
        assert read_cursor(bucket, "strava", "strava_activities") == cursor
        plan = bf.plan(CONFIG, "strava_activities", STRAVA_SINCE, STRAVA_UNTIL)
        for chunk, row in zip(plan.chunks, report["chunks"], strict=True):
            assert row["run_id"] == chunk.run_id  # the task id is the chunk's run id
            manifest = get_json(bucket, f"strava/_runs/strava_activities/{chunk.run_id}.json")
            assert manifest["scheduled_at"] == chunk.scheduled_at.isoformat()
            assert manifest["window"]["until"] == chunk.until.isoformat()

        em.reset_calls()
        again = ela_backfill(handle.environ, *STRAVA_ARGS, "--json", "--timeout", "60")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["totals"]["already_committed"] == 6
        assert list_calls(em) == []
        assert len(list(bucket.list("strava/landing/"))) == 1 + 6  # the scheduled run's + 6


def test_a_chunk_the_worker_gave_up_on_is_waited_for_and_sent_again(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    # No worker-side retries: the retriable failure reaches the backfill, which must wait and
    # send the same chunk again under the same task id (a stale FAILURE must not answer it).
    path = write_config(tmp_path / "config.yaml", retry_attempts=0)
    config = config_module.load(path)
    with StravaEmulator(activities=300) as em:
        assert isinstance(em, StravaEmulator)
        handle = worker_factory(
            extra_env=em.environ() | {"ELA_TOKEN_DIR": str(tmp_path / "t")}, config=path
        )
        em.inject(Fault(status=503, path="/athlete/activities", after=1))  # chunk 2, once
        plan = bf.plan(config, "strava_activities", date(2025, 3, 1), STRAVA_UNTIL)
        clock = FakeClock(datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC).timestamp())
        pacer = bf.Pacer(plan.profile.quotas, clock=clock.time, sleep=clock.sleep)
        runner = cli_backfill.worker_runner(handle.client, plan, timeout=60)
        state = bf.run_backfill(bf.Backfill(plan), runner, pacer=pacer)

        assert state.complete, state.results
        assert [r.attempts for r in state.results] == [1, 2, 1, 1]
        # No Retry-After reached us through Celery: wait for Strava's next quarter hour.
        assert clock.sleeps == [450 + SLACK_S]
        bucket = LocalBucket(tmp_path / "bucket")
        assert landed(bucket, [r.as_dict() for r in state.results]) == in_window(
            em, date(2025, 3, 1), STRAVA_UNTIL
        )
        errors = [o.name for o in bucket.list("strava/errors/")]
        assert len(errors) == 1 and plan.chunks[1].run_id in errors[0]  # the final failure
