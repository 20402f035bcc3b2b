"""Garmin: the real garminconnect library against the Garmin emulator, through run_job."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ela import config as config_module
from ela.config import IngestionConfig
from ela.connectors.base import FetchContext
from ela.connectors.garmin import PARALLEL_DAYS, authorize, garmin
from ela.errors import FatalError, IngestError, PayloadError, ReauthError, RetriableError
from ela.pipeline import Overrides, run_job
from ela.sandbox.configs import shipped_config, write_config
from ela.sandbox.emulators.garmin import DISPLAY_NAME, GarminEmulator
from ela.sandbox.emulators.server import Fault
from ela.sandbox.processes import REPO, wait_for
from ela.sinks import LocalBucket
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import run_id_of, with_job

LAST_DAY = date(2025, 6, 30)
SCHEDULED = datetime(2025, 6, 30, 13, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> IngestionConfig:
    return config_module.load(REPO / "ingestion-config-dev.yaml")


@pytest.fixture
def emulator() -> Iterator[GarminEmulator]:
    with GarminEmulator(last_day=LAST_DAY) as em:
        assert isinstance(em, GarminEmulator)
        yield em


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    return tmp_path / "tokens"


@pytest.fixture
def store(token_dir: Path) -> TokenStore:
    return TokenStore(token_dir)


@pytest.fixture
def bucket(tmp_path: Path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


Run = Callable[..., dict[str, Any]]


@pytest.fixture
def run(
    config: IngestionConfig, emulator: GarminEmulator, token_dir: Path, bucket: LocalBucket
) -> Run:
    """``run(job, cfg=None, environ=None, **overrides)``: one run_job against the emulator."""

    def go(
        job: str,
        cfg: IngestionConfig | None = None,
        environ: dict[str, str] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        return run_job(
            cfg or config,
            job,
            run_id=run_id_of(f"run-{job}-0001"),
            scheduled_at=SCHEDULED,
            overrides=Overrides.from_kwargs(**overrides),
            bucket=bucket,
            environ=emulator.environ() | {"ELA_TOKEN_DIR": str(token_dir)} | (environ or {}),
        )

    return go


def landed(bucket: LocalBucket, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    assert len(manifest["objects"]) == 1
    return read_jsonl(bucket.get_bytes(manifest["objects"][0]["name"]))


def sleep_landed(emulator: GarminEmulator, day: date) -> dict[str, Any]:
    """The emulator's sleep record for ``day`` as it lands: plus ``date`` and ``data_type``."""
    return {**emulator.sleep_for(day), "date": day.isoformat(), "data_type": "sleep"}


def heart_rate_landed(emulator: GarminEmulator, day: date) -> dict[str, Any]:
    """The heart-rate record as it lands: ``[[ts, bpm], ...]`` as objects, plus the day."""
    record = emulator.heart_rate_for(day)
    pairs = record["heartRateValues"]
    rows = None if pairs is None else [{"timestamp": t, "value": v} for t, v in pairs]
    return {**record, "heartRateValues": rows, "date": day.isoformat(), "data_type": "heart_rate"}


def days_ending(last: date, count: int) -> list[date]:
    return [last - timedelta(days=n) for n in reversed(range(count))]


def config_with_days(tmp_path: Path, **days: int) -> IngestionConfig:
    data = shipped_config("dev")
    for job, value in days.items():
        data["jobs"][job]["days"] = value
    return config_module.load(write_config(tmp_path / "config.yaml", jobs=data["jobs"]))


def objects(bucket: LocalBucket, prefix: str) -> list[str]:
    return [o.name for o in bucket.list(prefix)]


# -- what lands -----------------------------------------------------------------------------
def test_activities_of_the_configured_days(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket
) -> None:
    emulator.prepare_tokens(store)
    emulator.add_activities(2, on=LAST_DAY)
    emulator.add_activities(1, on=LAST_DAY - timedelta(days=3))  # just outside days: 3

    manifest = run("garmin_activities")

    expected = emulator.activities_between(LAST_DAY - timedelta(days=2), LAST_DAY)
    assert len(expected) >= 2
    assert landed(bucket, manifest) == expected
    assert manifest["records"] == len(expected)
    # The activity search, and once (then cached) the user's time zone: no display name needed.
    assert manifest["api_calls"] == 2 and emulator.calls_to("userprofile/settings") == 1
    assert emulator.calls_to("socialProfile") == 0


@pytest.mark.parametrize(
    ("job", "record_for", "date_of"),
    [
        ("garmin_sleep", sleep_landed, lambda r: r["dailySleepDTO"]["calendarDate"]),
        ("garmin_heart_rate", heart_rate_landed, lambda r: r["calendarDate"]),
    ],
)
def test_daily_records_one_per_day_of_the_configured_days(
    run: Run,
    emulator: GarminEmulator,
    store: TokenStore,
    bucket: LocalBucket,
    tmp_path: Path,
    job: str,
    record_for: Callable[[GarminEmulator, date], dict[str, Any]],
    date_of: Callable[[dict[str, Any]], str],
) -> None:
    emulator.prepare_tokens(store)
    cfg = config_with_days(tmp_path, **{job: 5})

    manifest = run(job, cfg=cfg)

    window = days_ending(LAST_DAY, 5)
    records = landed(bucket, manifest)
    assert records == [record_for(emulator, day) for day in window]
    assert [date_of(r) for r in records] == [r["date"] for r in records]
    endpoint = "dailySleepData" if job == "garmin_sleep" else "dailyHeartRate"
    assert emulator.calls_to(endpoint) == 5  # one library call per day
    assert manifest["api_calls"] == 7  # and the profile and its settings (the time zone)


def test_daily_calls_keep_their_connections_alive(
    run: Run, emulator: GarminEmulator, store: TokenStore, tmp_path: Path
) -> None:
    """The library opens a new session, so a new connection, for every day; ours reuse one
    per thread (on the real API each new connection is also a TLS handshake)."""
    emulator.prepare_tokens(store)
    cfg = config_with_days(tmp_path, garmin_heart_rate=60)
    connections = emulator.connections

    manifest = run("garmin_heart_rate", cfg=cfg)

    assert manifest["records"] == 60 and manifest["api_calls"] == 62  # and profile, settings
    assert emulator.connections - connections <= PARALLEL_DAYS + 1  # and the profile's thread


def test_shipped_days_is_one_record(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket
) -> None:
    emulator.prepare_tokens(store)
    manifest = run("garmin_sleep")  # days: 1 in the shipped dev config
    assert landed(bucket, manifest) == [sleep_landed(emulator, LAST_DAY)]


def test_explicit_window_for_backfill(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket, tmp_path: Path
) -> None:
    emulator.prepare_tokens(store)
    since, until = date(2025, 3, 1), date(2025, 4, 9)  # 40 days: several activity pages

    manifest = run("garmin_activities", since=since.isoformat(), until=until.isoformat())
    expected = emulator.activities_between(since, until)
    assert len(expected) > 40  # more than two pages of 20
    assert landed(bucket, manifest) == expected

    other = LocalBucket(tmp_path / "other")
    sleep = run_job(
        config_module.load(REPO / "ingestion-config-dev.yaml"),
        "garmin_sleep",
        run_id=run_id_of("backfill-sleep"),
        scheduled_at=SCHEDULED,
        overrides=Overrides.from_kwargs(since="2025-01-30", until="2025-02-02"),
        bucket=other,
        environ=emulator.environ() | {"ELA_TOKEN_DIR": str(store.directory)},
    )
    window = [date(2025, 1, 30) + timedelta(days=n) for n in range(4)]
    assert landed(other, sleep) == [sleep_landed(emulator, d) for d in window]


def test_window_longer_than_a_year_is_refused(
    run: Run, emulator: GarminEmulator, store: TokenStore
) -> None:
    emulator.prepare_tokens(store)
    with pytest.raises(FatalError, match="split the backfill"):
        run("garmin_sleep", since="2024-01-01", until="2025-06-30")
    assert emulator.calls_to("dailySleepData") == 0


# -- whole days, in the user's time zone ---------------------------------------------------------
BRUSSELS = ZoneInfo("Europe/Brussels")


class Clock:
    """The emulator's now, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run_at(
    config: IngestionConfig,
    emulator: GarminEmulator,
    bucket: LocalBucket,
    token_dir: Path,
    job: str,
    when: datetime,
) -> dict[str, Any]:
    """A run of ``job`` scheduled at ``when`` (its own run id), after clearing the call log."""
    emulator.reset_calls()
    return run_job(
        config,
        job,
        run_id=run_id_of(f"{job}-{when.astimezone(UTC):%Y%m%d%H%M}"),
        scheduled_at=when,
        bucket=bucket,
        environ=emulator.environ() | {"ELA_TOKEN_DIR": str(token_dir)},
    )


def days_asked(emulator: GarminEmulator) -> list[str]:
    """The days of the daily calls since the last run started (sent in parallel: sorted)."""
    return sorted(q["date"] for _, path, q in emulator.calls if "/wellness/daily" in path)


def test_each_day_lands_complete_once_after_it_ends(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    """With `days: 1` a run asks for today only, so the hours after a day's last run were never
    landed. Every day lands complete once it is over (plus the settling margin, 6 h by
    default); a day landed while in progress is marked partial."""
    clock = Clock(datetime(2025, 6, 30, 13, 0, tzinfo=BRUSSELS))
    with GarminEmulator(clock=clock) as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(store)

        def at(when: datetime) -> dict[str, Any]:
            clock.now = when
            return run_at(config, em, bucket, token_dir, "garmin_heart_rate", when)

        noon = at(datetime(2025, 6, 30, 13, 0, tzinfo=BRUSSELS))
        [so_far] = landed(bucket, noon)
        assert so_far["calendarDate"] == "2025-06-30" and noon["partial_days"] == ["2025-06-30"]
        assert so_far["heartRateValues"][-1]["timestamp"] <= clock.now.timestamp() * 1000

        evening = at(datetime(2025, 6, 30, 21, 0, tzinfo=BRUSSELS))
        assert evening["partial_days"] == ["2025-06-30"] and days_asked(em) == ["2025-06-30"]

        morning = at(datetime(2025, 7, 1, 9, 0, tzinfo=BRUSSELS))
        whole, today = landed(bucket, morning)
        assert days_asked(em) == ["2025-06-30", "2025-07-01"]
        assert whole == heart_rate_landed(em, date(2025, 6, 30))
        assert len(whole["heartRateValues"]) == 24 * 30  # to 23:58, every 2 minutes
        assert today["calendarDate"] == "2025-07-01" and morning["partial_days"] == ["2025-07-01"]
        assert morning["state_update"]["complete_through"] == "2025-06-30"

        later = at(datetime(2025, 7, 1, 17, 0, tzinfo=BRUSSELS))
        assert days_asked(em) == ["2025-07-01"]  # a complete day is not asked for again
        assert later["api_calls"] == 1  # the display name and time zone are cached


def test_a_day_is_final_only_after_the_settling_margin(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    """The watch syncs through the phone two hours behind: at 01:00 the day before is still
    missing its last samples, so it is landed partial; from 06:00 (6 h after midnight, by
    default) it is final and lands whole."""
    clock = Clock(datetime(2025, 6, 30, 12, 0, tzinfo=BRUSSELS))
    with GarminEmulator(clock=clock, sync_lag=timedelta(hours=2)) as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(store)
        run_at(config, em, bucket, token_dir, "garmin_heart_rate", clock.now)

        clock.now = datetime(2025, 7, 1, 1, 0, tzinfo=BRUSSELS)
        night = run_at(config, em, bucket, token_dir, "garmin_heart_rate", clock.now)
        unsynced, _ = landed(bucket, night)
        assert night["partial_days"] == ["2025-06-30", "2025-07-01"]
        assert len(unsynced["heartRateValues"]) == 23 * 30 + 1  # synced up to 23:00

        clock.now = datetime(2025, 7, 1, 7, 0, tzinfo=BRUSSELS)
        morning = run_at(config, em, bucket, token_dir, "garmin_heart_rate", clock.now)
        whole, _ = landed(bucket, morning)
        assert len(whole["heartRateValues"]) == 24 * 30
        assert morning["partial_days"] == ["2025-07-01"]
        assert morning["state_update"]["complete_through"] == "2025-06-30"


@contextmanager
def down_for_three_days(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket, job: str
) -> Iterator[tuple[GarminEmulator, dict[str, Any]]]:
    """A run of ``job`` on 29 June at 20:00 (Brussels), the worker down until 2 July at 10:00,
    then the run that catches up: its manifest, with the emulator still serving."""
    clock = Clock(datetime(2025, 6, 29, 20, 0, tzinfo=BRUSSELS))
    with GarminEmulator(clock=clock) as em:
        em.prepare_tokens(store)
        run_at(config, em, bucket, token_dir, job, clock.now)
        clock.now = datetime(2025, 7, 2, 10, 0, tzinfo=BRUSSELS)
        yield em, run_at(config, em, bucket, token_dir, job, clock.now)


def test_a_worker_down_for_three_days_catches_up_all_three(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    with down_for_three_days(config, store, token_dir, bucket, "garmin_sleep") as (em, manifest):
        nights = [r["dailySleepDTO"]["calendarDate"] for r in landed(bucket, manifest)]
        assert nights == ["2025-06-29", "2025-06-30", "2025-07-01", "2025-07-02"]
        assert manifest["partial_days"] == ["2025-07-02"]
        assert landed(bucket, manifest)[1] == sleep_landed(em, date(2025, 6, 30))
        state = json.loads(bucket.get_bytes("garmin/_state/garmin_sleep.json") or b"{}")
        assert state["complete_through"] == "2025-07-01"


def test_days_are_the_users_calendar_days_read_from_the_profile(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    """`calendarDate` is the user's local date, not UTC: at 03:00 UTC on 1 July it is still
    30 June in Los Angeles, and 1 July has nothing yet."""
    clock = Clock(datetime(2025, 7, 1, 3, 0, tzinfo=UTC))
    with GarminEmulator(clock=clock, timezone="America/Los_Angeles") as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(store)

        evening = run_at(config, em, bucket, token_dir, "garmin_heart_rate", clock.now)

        [record] = landed(bucket, evening)
        assert days_asked(em) == ["2025-06-30"] and evening["partial_days"] == ["2025-06-30"]
        assert record["heartRateValues"]  # the day so far, not an empty future day
        assert em.calls_to("userprofile/settings") == 1
        clock.now = datetime(2025, 7, 1, 16, 0, tzinfo=UTC)  # 09:00 in Los Angeles
        morning = run_at(config, em, bucket, token_dir, "garmin_heart_rate", clock.now)
        assert days_asked(em) == ["2025-06-30", "2025-07-01"]
        assert morning["partial_days"] == ["2025-07-01"]
        assert em.calls_to("userprofile/settings") == 0  # the zone is cached with the name


def test_a_configured_time_zone_wins_over_the_profile(
    config: IngestionConfig, store: TokenStore, token_dir: Path, bucket: LocalBucket
) -> None:
    tokyo = with_job(config, "garmin_heart_rate", user_timezone="Asia/Tokyo")
    clock = Clock(datetime(2025, 6, 30, 20, 0, tzinfo=UTC))  # 1 July, 05:00 in Tokyo
    with GarminEmulator(clock=clock, last_day=date(2025, 7, 1)) as em:
        assert isinstance(em, GarminEmulator)
        em.prepare_tokens(store)
        manifest = run_at(tokyo, em, bucket, token_dir, "garmin_heart_rate", clock.now)
        assert days_asked(em) == ["2025-07-01"] and manifest["partial_days"] == ["2025-07-01"]
        assert em.calls_to("userprofile/settings") == 0


def test_activities_land_once_and_a_late_sync_in_the_window_lands(
    config: IngestionConfig,
    emulator: GarminEmulator,
    store: TokenStore,
    token_dir: Path,
    bucket: LocalBucket,
) -> None:
    """Each run searches the last `days` days (3 in dev): an activity synced a day late is
    found, and one landed before is not landed again."""
    emulator.prepare_tokens(store)
    first = run_at(config, emulator, bucket, token_dir, "garmin_activities", SCHEDULED)
    assert first["records"] == len(emulator.activities_between(LAST_DAY - timedelta(2), LAST_DAY))

    again = run_at(config, emulator, bucket, token_dir, "garmin_activities", SCHEDULED + HOUR)
    assert again["records"] == 0 and again["api_calls"] == 1

    [late] = emulator.add_activities(1, on=LAST_DAY - timedelta(days=1))
    third = run_at(config, emulator, bucket, token_dir, "garmin_activities", SCHEDULED + 2 * HOUR)
    assert landed(bucket, third) == [late]


HOUR = timedelta(hours=1)


# -- tokens ---------------------------------------------------------------------------------
def test_expired_tokens_are_refreshed_and_written_back(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket
) -> None:
    emulator.prepare_tokens(store, expired=True)
    before = store.read("garmin")
    assert before

    manifest = run("garmin_sleep")

    after = store.read("garmin")
    assert after and after["di_token"] != before["di_token"]
    assert after["di_refresh_token"] != before["di_refresh_token"]  # the emulator rotates it
    assert after["di_refresh_token"] in emulator.refresh_tokens
    assert emulator.calls_to("/oauth/token") == 1
    assert emulator.calls_to("/mobile/api/login") == 0
    assert manifest["api_calls"] == 4  # refresh, profile settings, profile, one day

    run("garmin_heart_rate")  # the written-back tokens work without another refresh
    assert emulator.calls_to("/oauth/token") == 1


def test_tokens_rejected_mid_life_are_refreshed_after_the_401(
    run: Run, emulator: GarminEmulator, store: TokenStore
) -> None:
    emulator.prepare_tokens(store)
    before = store.read("garmin")
    emulator.expire_access_tokens()  # Garmin revoked the access token before its exp

    run("garmin_heart_rate")

    after = store.read("garmin")
    assert before and after and after["di_token"] != before["di_token"]
    assert emulator.calls_to("/oauth/token") == 1


def test_tokens_rejected_while_days_are_in_flight_are_refreshed_once(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket, tmp_path: Path
) -> None:
    """With 10 ms a call the days go four at a time; Garmin revokes the access token while
    they are in flight. Each of them gets a 401, one of them refreshes, the others retry with
    the new token: one refresh, every day landed once."""
    emulator.prepare_tokens(store)
    emulator.latency = 0.01
    cfg = config_with_days(tmp_path, garmin_heart_rate=40)
    revoked = threading.Event()

    def revoke_mid_run() -> None:
        wait_for(lambda: emulator.calls_to("dailyHeartRate") >= 12, 20, "a third of the days")
        emulator.expire_access_tokens()
        revoked.set()

    revoker = threading.Thread(target=revoke_mid_run)
    revoker.start()
    manifest = run("garmin_heart_rate", cfg=cfg)
    revoker.join()

    assert revoked.is_set() and emulator.peak_in_flight == 4
    assert emulator.calls_to("/oauth/token") == 1
    assert [r["calendarDate"] for r in landed(bucket, manifest)] == [
        d.isoformat() for d in days_ending(LAST_DAY, 40)
    ]


def test_a_refresh_by_another_worker_is_adopted_not_repeated(
    emulator: GarminEmulator, store: TokenStore
) -> None:
    emulator.prepare_tokens(store)
    environ = emulator.environ() | {"ELA_TOKEN_DIR": str(store.directory)}
    ctx = FetchContext(job="garmin_sleep", now=SCHEDULED, environ=environ, days=2)
    with garmin.open_client(ctx) as client:
        # Meanwhile another worker refreshed: its tokens are stored, ours are spent and revoked.
        ours = store.read("garmin")
        assert ours
        emulator.prepare_tokens(store)
        emulator.refresh_tokens.pop(ours["di_refresh_token"])
        emulator.access_tokens.pop(ours["di_token"])

        records = list(garmin.data_types["sleep"].fetch(client, ctx))

    assert [r["dailySleepDTO"]["calendarDate"] for r in records] == ["2025-06-29", "2025-06-30"]
    assert emulator.calls_to("/oauth/token") == 0  # the 401 re-read the store instead


def test_a_damaged_token_file_asks_for_ela_auth(
    run: Run, emulator: GarminEmulator, token_dir: Path
) -> None:
    token_dir.mkdir()
    (token_dir / "garmin.json").write_text('{"di_token": "trunc')
    with pytest.raises(ReauthError, match="ela auth garmin"):
        run("garmin_sleep")
    assert emulator.calls == []


def test_no_stored_tokens_asks_for_ela_auth_and_never_logs_in(
    run: Run, emulator: GarminEmulator, bucket: LocalBucket
) -> None:
    with pytest.raises(ReauthError, match="ela auth garmin"):
        run("garmin_sleep")
    assert emulator.calls == []  # not even a login attempt with the password in environ
    assert objects(bucket, "garmin/_runs/") == []
    (error_name,) = objects(bucket, "garmin/errors/")
    error = json.loads(bucket.get_bytes(error_name) or b"{}")
    assert error["kind"] == "reauth"
    assert emulator.password not in json.dumps(error)


def test_refresh_refused_asks_for_ela_auth_and_never_logs_in(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket
) -> None:
    emulator.prepare_tokens(store, expired=True)
    emulator.revoke_refresh_tokens()
    with pytest.raises(ReauthError, match="ela auth garmin"):
        run("garmin_activities")
    assert emulator.calls_to("/mobile/api/login") == 0
    assert objects(bucket, "garmin/_runs/") == []


# -- the display name -----------------------------------------------------------------------
def test_the_display_name_is_cached_so_runs_make_the_minimum_calls(
    run: Run, emulator: GarminEmulator, store: TokenStore, tmp_path: Path
) -> None:
    emulator.prepare_tokens(store)
    cfg = config_with_days(tmp_path, garmin_sleep=5, garmin_heart_rate=5)

    first = run("garmin_sleep", cfg=cfg)
    assert first["api_calls"] == 7  # the profile and its settings once, then one call a day
    assert store.read("garmin-profile") == {"display_name": DISPLAY_NAME, "full_name": "Ela Runner"}
    assert store.read("garmin-zone") == {"time_zone": "Europe/Brussels"}
    assert "displayName" not in json.dumps(store.read("garmin"))  # the tokens entry is untouched

    emulator.reset_calls()
    again = run("garmin_heart_rate", cfg=cfg)
    assert again["api_calls"] == 5 == emulator.calls_to("dailyHeartRate")  # one per day only
    activities = run("garmin_activities")
    assert activities["api_calls"] == 1  # the pages only (3 days: one page)
    assert emulator.calls_to("socialProfile") == 0


def test_a_renamed_account_refetches_the_profile_once(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket, tmp_path: Path
) -> None:
    emulator.prepare_tokens(store)
    store.write("garmin-profile", {"display_name": "old-name", "full_name": "Ela Runner"})
    cfg = config_with_days(tmp_path, garmin_sleep=3)

    manifest = run("garmin_sleep", cfg=cfg)

    expected = [sleep_landed(emulator, d) for d in days_ending(LAST_DAY, 3)]
    assert landed(bucket, manifest) == expected
    assert emulator.calls_to("socialProfile") == 1  # once, however many days got the 403
    assert (store.read("garmin-profile") or {})["display_name"] == DISPLAY_NAME
    assert 1 <= emulator.calls_to("dailySleepData/old-name") <= 3  # in flight before the refetch
    assert emulator.calls_to(f"dailySleepData/{DISPLAY_NAME}") == 3


def test_a_403_to_a_freshly_fetched_name_is_not_retried(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket
) -> None:
    emulator.prepare_tokens(store)
    emulator.inject(Fault(403, path="dailySleepData"))
    with pytest.raises(ReauthError, match="HTTP 403 from sleep 2025-06-30"):
        run("garmin_sleep")
    assert emulator.calls_to("socialProfile") == 1
    assert emulator.calls_to("dailySleepData") == 1
    assert objects(bucket, "garmin/_runs/") == []


# -- ela auth garmin ------------------------------------------------------------------------
def scripted(answers: dict[str, str], asked: list[tuple[str, bool]]) -> Callable[[str, bool], str]:
    """An ``ask`` answering the first key (in order) found in the prompt."""

    def ask(prompt: str, secret: bool) -> str:
        asked.append((prompt, secret))
        return next(v for k, v in answers.items() if k in prompt.lower())

    return ask


def test_authorize_with_mfa_stores_working_tokens(
    config: IngestionConfig, store: TokenStore, bucket: LocalBucket
) -> None:
    with GarminEmulator(last_day=LAST_DAY, mfa=True) as em:
        assert isinstance(em, GarminEmulator)
        environ = {k: v for k, v in em.environ().items() if not k.endswith(("USERNAME", "WORD"))}
        asked: list[tuple[str, bool]] = []
        answers = {"mfa": em.mfa_code, "email": em.username, "password": em.password}
        said: list[str] = []

        authorize(environ, store, scripted(answers, asked), said.append)

        assert [secret for _, secret in asked] == [False, True, False]  # password hidden
        assert "mfa" in asked[2][0].lower()
        assert em.calls_to("/mfa/verifyCode") == 1
        assert said and all(em.password not in line for line in said)
        tokens = store.read("garmin")
        assert tokens and tokens["di_token"] in em.access_tokens
        assert (store.read("garmin-profile") or {})["display_name"] == DISPLAY_NAME

        manifest = run_job(
            config,
            "garmin_sleep",
            run_id=run_id_of("after-auth"),
            scheduled_at=SCHEDULED,
            bucket=bucket,
            environ=environ | {"ELA_TOKEN_DIR": str(store.directory)},
        )
        assert landed(bucket, manifest) == [sleep_landed(em, LAST_DAY)]


def test_authorize_with_a_wrong_mfa_code_stores_nothing(store: TokenStore) -> None:
    with GarminEmulator(last_day=LAST_DAY, mfa=True) as em:
        assert isinstance(em, GarminEmulator)
        with pytest.raises(ReauthError, match="MFA"):
            authorize(em.environ(), store, lambda prompt, secret: "000000", lambda _: None)
    assert store.read("garmin") is None


def test_authorize_with_a_wrong_password_stores_nothing(store: TokenStore) -> None:
    with GarminEmulator(last_day=LAST_DAY) as em:
        assert isinstance(em, GarminEmulator)
        environ = em.environ() | {"GARMIN_PASSWORD": "wrong"}
        with pytest.raises(ReauthError, match="GARMIN_PASSWORD"):
            authorize(environ, store, lambda prompt, secret: "", lambda _: None)
        assert em.calls_to("/mobile/api/login") >= 1
    assert store.read("garmin") is None


# -- faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("job", "fault", "error", "message"),
    [
        ("garmin_sleep", Fault(429, retry_after=30, path="dailySleepData"), RetriableError, "429"),
        ("garmin_heart_rate", Fault(503, path="dailyHeartRate"), RetriableError, "503"),
        ("garmin_activities", Fault(500, path="search/activities"), RetriableError, "500"),
        ("garmin_sleep", Fault(0, delay=1.5, path="dailySleepData"), RetriableError, "Timeout"),
        ("garmin_sleep", Fault(malformed=True, path="dailySleepData"), PayloadError, "2025-06-30"),
        ("garmin_sleep", Fault(401, path="dailySleepData", times=None), ReauthError, "ela auth"),
    ],
    ids=["429", "503", "500-activities", "timeout", "malformed", "401"],
)
def test_faults_map_to_the_error_kind_and_commit_nothing(
    run: Run,
    emulator: GarminEmulator,
    store: TokenStore,
    bucket: LocalBucket,
    job: str,
    fault: Fault,
    error: type[IngestError],
    message: str,
) -> None:
    emulator.prepare_tokens(store)
    emulator.inject(fault)

    with pytest.raises(error, match=message) as raised:
        run(job, environ={"ELA_HTTP_TIMEOUT": "0.5"})  # the timeout fault waits 1.5 s

    if fault.status == 429:
        assert isinstance(raised.value, RetriableError) and raised.value.retry_after == 30
    assert objects(bucket, "garmin/_runs/") == []
    assert objects(bucket, "garmin/landing/") == []
    assert objects(bucket, "garmin/_state/") == []
    (error_name,) = objects(bucket, "garmin/errors/")
    body = json.loads(bucket.get_bytes(error_name) or b"{}")
    assert body["job"] == job and body["kind"] == error.kind
    assert emulator.calls_to("/mobile/api/login") == 0


def test_a_record_for_the_wrong_day_is_a_payload_error(
    run: Run, emulator: GarminEmulator, store: TokenStore, bucket: LocalBucket
) -> None:
    emulator.prepare_tokens(store)
    emulator.set_heart_rate(LAST_DAY, emulator.heart_rate_for(LAST_DAY - timedelta(days=1)))
    with pytest.raises(PayloadError, match="heart_rate 2025-06-30"):
        run("garmin_heart_rate")
    assert objects(bucket, "garmin/_runs/") == []


# -- a real worker --------------------------------------------------------------------------
def test_the_three_tasks_on_a_real_worker(
    worker_factory: WorkerFactory, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    now = datetime.now(UTC)  # the emulator's clock stays here: today's data stops growing
    with GarminEmulator(clock=lambda: now) as em:  # its year ends today: runs are sent now
        assert isinstance(em, GarminEmulator)
        token_dir = tmp_path / "worker-tokens"
        em.prepare_tokens(TokenStore(token_dir), expired=True)
        worker = worker_factory(extra_env=em.environ() | {"ELA_TOKEN_DIR": str(token_dir)})

        results = {
            task: worker.call(f"tasks.garmin.{task}", timeout=60)
            for task in ("activities", "sleep", "heart_rate")
        }

        for task, manifest in results.items():
            assert manifest["outcome"] == "succeeded", task
            assert local_bucket.get_bytes(f"garmin/_runs/garmin_{task}/{manifest['run_id']}.json")
        today = em.last_day  # the user's (Brussels), as the runs see it
        assert landed(local_bucket, results["sleep"]) == [sleep_landed(em, today)]
        assert landed(local_bucket, results["heart_rate"]) == [heart_rate_landed(em, today)]
        assert results["heart_rate"]["partial_days"] == [today.isoformat()]
        expected = em.activities_between(today - timedelta(days=2), today)
        names = [o["name"] for o in results["activities"]["objects"]]  # none if no activities
        assert [r for name in names for r in read_jsonl(local_bucket.get_bytes(name))] == expected
        assert em.calls_to("/oauth/token") == 1  # one refresh, written back, reused
        assert em.calls_to("/mobile/api/login") == 0
