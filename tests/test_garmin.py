"""Garmin: the real garminconnect library against the Garmin emulator, through run_job."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ela import config as config_module
from ela.config import IngestionConfig
from ela.connectors.base import FetchContext
from ela.connectors.garmin import PARALLEL_DAYS, authorize, garmin
from ela.emulators.garmin import DISPLAY_NAME, GarminEmulator
from ela.emulators.server import Fault
from ela.errors import FatalError, IngestError, PayloadError, ReauthError, RetriableError
from ela.pipeline import Overrides, run_job
from ela.sinks import LocalBucket
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import REPO, shipped_config, write_config

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
            run_id=f"run-{job}-0001",
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
    assert manifest["api_calls"] == 1  # the activity search only: no display name needed
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
    assert manifest["api_calls"] == 6  # and the profile


def test_daily_calls_keep_their_connections_alive(
    run: Run, emulator: GarminEmulator, store: TokenStore, tmp_path: Path
) -> None:
    """The library opens a new session, so a new connection, for every day; ours reuse one
    per thread (on the real API each new connection is also a TLS handshake)."""
    emulator.prepare_tokens(store)
    cfg = config_with_days(tmp_path, garmin_heart_rate=60)
    connections = emulator.connections

    manifest = run("garmin_heart_rate", cfg=cfg)

    assert manifest["records"] == 60 and manifest["api_calls"] == 61
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
        run_id="backfill-sleep",
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
    assert manifest["api_calls"] == 3  # refresh, profile, one day

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
    assert first["api_calls"] == 6  # the profile once, then one call per day
    assert store.read("garmin-profile") == {"display_name": DISPLAY_NAME, "full_name": "Ela Runner"}
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
            run_id="after-auth",
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
    with GarminEmulator() as em:  # its year ends today: the worker schedules runs now
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
        today = datetime.fromisoformat(results["sleep"]["scheduled_at"]).date()
        assert landed(local_bucket, results["sleep"]) == [sleep_landed(em, today)]
        assert landed(local_bucket, results["heart_rate"]) == [heart_rate_landed(em, today)]
        activities_day = datetime.fromisoformat(results["activities"]["scheduled_at"]).date()
        expected = em.activities_between(activities_day - timedelta(days=2), activities_day)
        names = [o["name"] for o in results["activities"]["objects"]]  # none if no activities
        assert [r for name in names for r in read_jsonl(local_bucket.get_bytes(name))] == expected
        assert em.calls_to("/oauth/token") == 1  # one refresh, written back, reused
        assert em.calls_to("/mobile/api/login") == 0
