"""Strava end to end through stravalib against the local Strava emulator (loopback only)."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from ela import config as config_module
from ela import naming
from ela.config import IngestionConfig
from ela.connectors.base import FetchContext, Paginator, _decode_once
from ela.connectors.strava import (
    _from_both_ends,
    activities,
    authorize,
    rate_limit_reset,
    strava,
)
from ela.errors import IngestError, PayloadError, ReauthError, RetriableError
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.server import Fault, Request, Response
from ela.sandbox.emulators.strava import BOOTSTRAP_REFRESH_TOKEN, StravaEmulator, encode_polyline
from ela.sandbox.processes import REPO, wait_for
from ela.sinks import Bucket, LocalBucket, get_json
from ela.state import read_cursor
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory, read_jsonl
from tests.helpers import with_job

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
WHEN = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
JSON = list[dict[str, Any]]
NO_OVERRIDES = Overrides()


# -- the rate-limit window arithmetic (pure) ----------------------------------------------------


def headers(usage: str, read_usage: str = "0,0", limit: str = "100,1000") -> dict[str, str]:
    return {
        "X-RateLimit-Limit": limit,
        "X-RateLimit-Usage": usage,
        "X-ReadRateLimit-Limit": limit,
        "X-ReadRateLimit-Usage": read_usage,
    }


@pytest.mark.parametrize(
    ("given", "now", "expected"),
    [
        (headers("12,340", "12,340"), datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC), None),
        # 15-minute window spent at 10:07:30 → it resets at 10:15:00.
        (headers("100,340"), datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC), 450.0),
        (headers("101,340"), datetime(2025, 6, 1, 10, 59, 59, tzinfo=UTC), 1.0),
        (headers("100,340"), datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC), 900.0),
        # Only the read limit is spent: same window arithmetic.
        (headers("50,340", "100,340"), datetime(2025, 6, 1, 10, 44, 0, tzinfo=UTC), 60.0),
        # The daily window is spent at 23:00 → midnight UTC, even if the 15-min one is too.
        (headers("100,1000"), datetime(2025, 6, 1, 23, 0, 0, tzinfo=UTC), 3600.0),
        (headers("5,340", "5,1000"), datetime(2025, 6, 1, 0, 0, 1, tzinfo=UTC), 86399.0),
        # Malformed or absent headers tell nothing.
        (headers("lots"), datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC), None),
        ({}, datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC), None),
        # Header names are case-insensitive.
        (
            {"x-ratelimit-limit": "100,1000", "x-ratelimit-usage": "100,10"},
            datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC),
            450.0,
        ),
    ],
)
def test_rate_limit_reset(given: dict[str, str], now: datetime, expected: float | None) -> None:
    assert rate_limit_reset(given, now) == expected


def test_rate_limit_reset_in_another_timezone_is_still_utc_windows() -> None:
    paris = datetime(2025, 6, 2, 1, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert rate_limit_reset(headers("3,1000"), paris) == 22.5 * 3600


def test_polyline_encoding_matches_googles_example() -> None:
    points = [(38.5, -120.2), (40.7, -120.95), (43.252, -126.453)]
    assert encode_polyline(points) == "_p~iF~ps|U_ulLnnqC_mqNvxq`@"


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_importing_the_connectors_does_not_import_stravalib() -> None:
    code = "import sys, ela.connectors; sys.exit('stravalib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_seeded_records_parse_in_stravalib() -> None:
    from stravalib.model import DetailedAthlete, SummaryActivity

    emulator = StravaEmulator(activities=400)
    for record in emulator.activities:
        SummaryActivity.model_validate(record)
    DetailedAthlete.model_validate(emulator.athlete)
    starts = [a["start_date"] for a in emulator.activities]
    assert starts == sorted(set(starts))
    assert StravaEmulator(activities=400).activities == emulator.activities  # deterministic


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def emu() -> Iterator[StravaEmulator]:
    emulator = StravaEmulator(activities=300)
    with emulator:
        yield emulator


@pytest.fixture
def bucket(tmp_path: Path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


def environ(emulator: StravaEmulator, tmp_path: Path, **env: str) -> dict[str, str]:
    return {**emulator.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens"), **env}


def run(
    emulator: StravaEmulator,
    bucket: Bucket,
    tmp_path: Path,
    job: str = "strava_activities",
    run_id: str | None = None,
    overrides: Overrides = NO_OVERRIDES,
    env: dict[str, str] | None = None,
    config: IngestionConfig = CONFIG,
) -> dict[str, Any]:
    return run_job(
        config,
        job,
        run_id=run_id or str(uuid.uuid4()),
        scheduled_at=WHEN,
        overrides=overrides,
        bucket=bucket,
        environ=environ(emulator, tmp_path, **(env or {})),
    )


def landed(bucket: Bucket, manifest: dict[str, Any]) -> JSON:
    records: JSON = []
    for obj in manifest["objects"]:
        records.extend(read_jsonl(bucket.get_bytes(obj["name"])))
    return records


def epoch(record: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(record["start_date"]).timestamp())


def activity_calls(emulator: StravaEmulator) -> int:
    return emulator.calls_to("/api/v3/athlete/activities")


# -- landing ---------------------------------------------------------------------------------


def test_first_run_lands_every_activity_oldest_first(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    manifest = run(emu, bucket, tmp_path)
    expected = emu.window(after=0)
    assert landed(bucket, manifest) == expected
    assert manifest["records"] == 300
    assert manifest["cursor_before"] is None
    assert manifest["cursor_after"] == epoch(expected[-1])
    assert read_cursor(bucket, "strava", "strava_activities") == epoch(expected[-1])
    # One refresh (bootstrap) + two pages of 200 (300 activities): Strava's maximum page.
    assert manifest["api_calls"] == 3
    pages = [q for _, path, q in emu.calls if path == "/api/v3/athlete/activities"]
    assert [(q["page"], q["per_page"], q["after"]) for q in pages] == [
        ("1", "200", "0"),
        ("2", "200", "0"),
    ]


def test_nothing_new_lands_nothing_with_one_call(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    first = run(emu, bucket, tmp_path)
    emu.reset_calls()
    second = run(emu, bucket, tmp_path)
    assert second["records"] == 0
    assert second["objects"] == []
    assert second["cursor_after"] == second["cursor_before"] == first["cursor_after"]
    assert second["api_calls"] == 1
    lookback = first["cursor_after"] - 10 * 86400  # re-read for late uploads; none landed twice
    assert emu.calls == [
        (
            "GET",
            "/api/v3/athlete/activities",
            {"after": str(lookback), "page": "1", "per_page": "200"},
        )
    ]


def test_a_run_after_new_activities_lands_exactly_them(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path)
    new = emu.add_activities(7)
    manifest = run(emu, bucket, tmp_path)
    assert landed(bucket, manifest) == new
    assert manifest["cursor_after"] == epoch(new[-1])
    assert manifest["api_calls"] == 1


def test_limit_lands_the_oldest_and_the_next_run_continues(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    everything = emu.window(after=0)
    first = run(emu, bucket, tmp_path, overrides=Overrides(limit=120))
    assert landed(bucket, first) == everything[:120]
    assert first["cursor_after"] == epoch(everything[119])
    assert first["api_calls"] == 2  # refresh + one page of 120 (no bigger page than needed)
    rest = run(emu, bucket, tmp_path)
    assert landed(bucket, rest) == everything[120:]


def test_the_next_pages_are_asked_for_while_this_one_is_read(tmp_path: Path) -> None:
    """Pages travel while page 1's records are still being taken (here: held after the first),
    with 20 ms a call: the next page from each end, one waiting beside page 1 and one held by
    the paging thread, and the next call of the end handed over. No further until page 1 is
    read; the calls are as many as a sequential run makes."""
    with StravaEmulator(activities=2_000) as emulator:
        assert isinstance(emulator, StravaEmulator)
        emulator.latency = 0.02
        ctx = FetchContext(job="strava_activities", now=WHEN, environ=environ(emulator, tmp_path))
        with strava.open_client(ctx) as client:
            records = activities(client, ctx)
            head = next(records)
            wait_for(lambda: activity_calls(emulator) >= 3, 10, "two more pages")
            time.sleep(0.2)  # they have arrived, and what they lead to
            held = ends(emulator)
            assert sorted(held[:3]) == ["n1", "o1", "o2"]
            assert held[3:] in ([], ["o3"], ["n2"])  # the next of the end handed over first
            time.sleep(0.2)
            assert ends(emulator) == held  # nothing more until page 1 is read
            rest = list(records)
        assert sorted([head, *rest], key=epoch) == emulator.window(after=0)
        assert activity_calls(emulator) == 11  # ten full pages and the one that meets them


@pytest.mark.parametrize(("delay", "two_ends"), [(0.0, False), (0.02, True)])
def test_a_second_end_is_read_only_when_the_first_call_waited(delay: float, two_ends: bool) -> None:
    """A page that comes back at once (here: from memory) is followed from one end, in the
    paging thread; one that took 20 ms opens the newest end. Either way: every activity, in
    n // 200 + 1 calls. A thread the system deschedules for more than 5 ms looks like one
    that waited (on a loaded machine the first call may): three tries, each complete."""
    start = datetime(2020, 1, 1, 7, tzinfo=UTC)
    rows = [{"id": n, "start_date": (start + timedelta(days=n)).isoformat()} for n in range(2_345)]
    top = int((start + timedelta(days=2_346)).timestamp())
    picked = []
    for _ in range(3):
        calls: list[str] = []

        def get(oldest_first: bool, pages: Paginator, calls: list[str] = calls) -> Any:
            calls.append(("o" if oldest_first else "n") + str(pages.token))
            time.sleep(delay)
            ordered = rows if oldest_first else rows[::-1]
            return ordered[(pages.token - 1) * 200 : pages.token * 200]

        pages = _from_both_ends(get, Paginator("strava: activities", token=1), 200, top)
        got = [r["id"] for _, page in pages for r in page]
        assert set(got) == set(range(2_345))
        assert len(calls) == 2_345 // 200 + 1
        picked.append(any(c.startswith("n") for c in calls))
    # A 20 ms wait is never mistaken for none; no wait may look like one, not three times.
    assert all(picked) if two_ends else not all(picked)


def ends(emulator: StravaEmulator) -> list[str]:
    """The activities pages asked for, in order: ``o3`` is page 3 from the oldest end (with
    ``after``), ``n1`` page 1 from the newest."""
    return [
        ("o" if "after" in q else "n") + q["page"]
        for _, path, q in emulator.calls
        if path == "/api/v3/athlete/activities"
    ]


@pytest.mark.parametrize("count", [199, 200, 201, 400, 999, 1_000, 1_001, 2_345, 5_000])
def test_a_window_read_from_both_ends_lands_each_activity_once_in_the_fewest_calls(
    bucket: LocalBucket, tmp_path: Path, count: int
) -> None:
    """With 20 ms a call, so that the two ends' calls overlap: every activity lands once, in
    n // 200 + 1 calls, as many as reading from the oldest end alone makes."""
    with StravaEmulator(activities=count) as emulator:
        assert isinstance(emulator, StravaEmulator)
        emulator.latency = 0.02
        manifest = run(emulator, bucket, tmp_path)
        assert sorted(landed(bucket, manifest), key=epoch) == emulator.window(after=0)
        assert activity_calls(emulator) == count // 200 + 1
        pages = ends(emulator)
        assert pages[0] == "o1"
        if count >= 1_000:  # the gap held two pages or more after the first: both ends read
            assert "n1" in pages and emulator.peak_in_flight == 2
        assert manifest["cursor_after"] == epoch(emulator.window(after=0)[-1])


def test_a_gap_far_sparser_than_the_ends_costs_one_call_more_and_loses_nothing(
    bucket: LocalBucket, tmp_path: Path
) -> None:
    """The worst case of reading from both ends: the pages at the ends hold an activity a day,
    and the four years between them 150 (an injury, a new job). Once the oldest end has read
    400 and the newest 200, the gap looks like 1,400 activities, so both ends ask for a page:
    either alone would have reached the other end, so one call is one more than reading from
    one end makes. Never more than that one: the run ends with the page that meets."""
    with StravaEmulator(activities=0) as emulator:
        assert isinstance(emulator, StravaEmulator)
        first = datetime(2020, 1, 1, 7, tzinfo=UTC)
        last = datetime(2025, 6, 30, 7, tzinfo=UTC)
        daily = [first + timedelta(days=i) for i in range(400)]
        recent = [last - timedelta(days=i) for i in range(200)][::-1]
        step = (recent[0] - daily[-1]) / 151
        sparse = [daily[-1] + step * (i + 1) for i in range(150)]
        emulator.upload(daily + sparse + recent)
        emulator.latency = 0.02
        manifest = run(emulator, bucket, tmp_path)
        assert sorted(landed(bucket, manifest), key=epoch) == emulator.window(after=0)
        assert manifest["records"] == 750
        # o1, o2 and n1, then o3 and n2 together where o3 alone was enough (or, if o3 comes
        # back before n1, o3 meets n1 and no call is wasted): never more than one call more.
        assert activity_calls(emulator) in (750 // 200 + 1, 750 // 200 + 2)
        assert "n1" in ends(emulator)  # both ends were read: the case is the one described


def test_activities_starting_in_the_same_second_where_the_ends_meet_all_land(
    bucket: LocalBucket, tmp_path: Path
) -> None:
    """Two devices recording one ride upload it twice, with the same start: 30 such pairs and
    triples around the middle of the window, where the two ends meet. Both ends must have
    read past the shared second before the run ends."""
    with StravaEmulator(activities=0) as emulator:
        assert isinstance(emulator, StravaEmulator)
        start = datetime(2020, 1, 1, 7, tzinfo=UTC)
        starts = [start + timedelta(days=i) for i in range(1_000)]
        starts += [start + timedelta(days=i) for i in range(480, 520)]  # a twin each
        starts += [start + timedelta(days=i) for i in range(495, 505)]  # and a third
        emulator.upload(starts)
        emulator.latency = 0.02
        manifest = run(emulator, bucket, tmp_path)
        assert sorted(landed(bucket, manifest), key=epoch) == emulator.window(after=0)
        assert manifest["records"] == 1_050
        assert activity_calls(emulator) == 1_050 // 200 + 1
        assert "n1" in ends(emulator)  # the ends met: the ties were read from both sides


def test_a_decoded_page_is_freed_as_soon_as_it_is_dropped() -> None:
    """A response whose body was decoded once must not sit in a reference cycle: with the
    cyclic garbage collector off (as between its rare full passes), dropping it frees it."""
    response = requests.Response()
    response.status_code = 200
    response._content = b'[{"id": 1, "start_date": "2025-07-01T08:00:00Z"}]'
    _decode_once(response)
    first = response.json()
    assert first == [{"id": 1, "start_date": "2025-07-01T08:00:00Z"}]
    assert response.json() is first  # decoded once
    freed = weakref.ref(response)
    gc.disable()
    try:
        del response
        assert freed() is None
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("limit", "pages"),
    [(None, 3), (200, 1), (250, 2), (399, 2), (400, 2), (401, 3)],
)
def test_reading_ahead_adds_no_call(
    bucket: LocalBucket, tmp_path: Path, limit: int | None, pages: int
) -> None:
    """A page that could reach the limit is read through before the next is asked for."""
    with StravaEmulator(activities=400) as emulator:
        assert isinstance(emulator, StravaEmulator)
        manifest = run(emulator, bucket, tmp_path, overrides=Overrides(limit=limit))
        assert manifest["records"] == min(limit or 400, 400)
        assert activity_calls(emulator) == pages


def test_a_limit_reached_after_skipping_landed_ids_adds_no_call(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    """The lookback's landed ids do not count towards the limit, so a full page may still be
    followed by another: asked for once the page is read, not before."""
    config = with_job(CONFIG, "strava_activities", lookback_days=90)
    first = run(emu, bucket, tmp_path, config=config)
    new = emu.add_activities(190)
    emu.reset_calls()
    second = run(emu, bucket, tmp_path, config=config, overrides=Overrides(limit=200))
    assert landed(bucket, second) == new  # all of them: page 1 held landed ids too
    assert first["records"] == 300
    assert activity_calls(emu) == 2


def test_explicit_window_lands_that_window_without_moving_the_cursor(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    everything = emu.window(after=0)
    since = datetime.fromisoformat(everything[100]["start_date"])
    until = datetime.fromisoformat(everything[150]["start_date"])
    manifest = run(emu, bucket, tmp_path, overrides=Overrides(since=since, until=until))
    assert landed(bucket, manifest) == everything[100:150]  # since inclusive, until exclusive
    assert manifest["cursor_after"] is None  # nothing before `since` was landed: no skipping
    incremental = run(emu, bucket, tmp_path)  # the rest, not what the window landed
    assert landed(bucket, incremental) == everything[:100] + everything[150:]


def test_backfill_joining_the_cursor_moves_it(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    everything = emu.window(after=0)
    first = run(emu, bucket, tmp_path, overrides=Overrides(limit=50))
    since = datetime.fromisoformat(everything[10]["start_date"])
    again = run(emu, bucket, tmp_path, overrides=Overrides(since=since, limit=100))
    assert landed(bucket, again) == everything[10:110]
    assert again["cursor_before"] == first["cursor_after"]
    assert again["cursor_after"] == epoch(everything[109])


# -- completeness: late uploads, clocks in the future --------------------------------------------


def activity_queries(emulator: StravaEmulator) -> list[dict[str, str]]:
    return [q for _, path, q in emulator.calls if path == "/api/v3/athlete/activities"]


def test_a_late_upload_before_the_cursor_lands_on_the_next_run(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    """`after` filters on start time: an activity uploaded after a run but started before its
    cursor (a watch synced the next morning, a run entered by hand) is re-read and lands."""
    first = run(emu, bucket, tmp_path)
    cursor = datetime.fromtimestamp(first["cursor_after"], UTC)
    synced = emu.upload([cursor - timedelta(hours=20)])
    by_hand = emu.upload([cursor - timedelta(days=3)], manual=True)
    emu.reset_calls()

    manifest = run(emu, bucket, tmp_path)

    assert landed(bucket, manifest) == by_hand + synced  # oldest first, nothing else
    assert by_hand[0]["manual"] is True and by_hand[0]["upload_id"] is None
    assert manifest["api_calls"] == 1  # the lookback is re-read in the same page
    assert manifest["cursor_after"] == first["cursor_after"]  # nothing newer than the cursor
    lookback = first["cursor_after"] - 10 * 86400  # the default: the origin's 10 days
    assert [q["after"] for q in activity_queries(emu)] == [str(lookback)]

    emu.reset_calls()
    again = run(emu, bucket, tmp_path)  # steady state: one call, nothing lands twice
    assert again["records"] == 0 and again["api_calls"] == 1


def test_the_lookback_is_a_job_setting(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    first = run(emu, bucket, tmp_path)
    cursor = datetime.fromtimestamp(first["cursor_after"], UTC)
    [late] = emu.upload([cursor - timedelta(days=12)])
    assert run(emu, bucket, tmp_path)["records"] == 0  # older than the default 10 days

    config = with_job(CONFIG, "strava_activities", lookback_days=14)
    manifest = run(emu, bucket, tmp_path, config=config)
    assert landed(bucket, manifest) == [late]
    assert manifest["params"]["lookback_days"] == 14


def test_an_activity_from_the_future_lands_but_never_moves_the_cursor(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    first = run(emu, bucket, tmp_path)
    [future] = emu.upload([datetime(9999, 1, 1, tzinfo=UTC)])  # a device with a wrong clock

    manifest = run(emu, bucket, tmp_path)

    assert landed(bucket, manifest) == [future]
    assert manifest["cursor_after"] == first["cursor_after"]
    [warning] = manifest["warnings"]
    assert str(future["id"]) in warning and "9999-01-01" in warning
    new = emu.add_activities(2)  # what really comes next still lands, and the future one once
    assert landed(bucket, run(emu, bucket, tmp_path)) == new


def test_athlete_lands_the_profile_unchanged(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    manifest = run(emu, bucket, tmp_path, "strava_athlete")
    assert landed(bucket, manifest) == [emu.athlete]
    assert manifest["api_calls"] == 2  # bootstrap refresh + /athlete


def test_every_response_carries_rate_limit_headers(emu: StravaEmulator) -> None:
    for _ in range(3):
        answer = requests.get(f"{emu.url}/api/v3/athlete", timeout=5)
    assert answer.status_code == 401
    assert answer.headers["X-RateLimit-Limit"] == "100,1000"
    assert answer.headers["X-RateLimit-Usage"] == "3,3"
    assert answer.headers["X-ReadRateLimit-Usage"] == "3,3"


def test_activities_order_follows_strava(emu: StravaEmulator, tmp_path: Path) -> None:
    """Oldest first with `after`, newest first without it; per_page capped at 200."""
    token = requests.post(
        f"{emu.url}/oauth/token",
        data={
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": BOOTSTRAP_REFRESH_TOKEN,
        },
        timeout=5,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{emu.url}/api/v3/athlete/activities"
    newest = requests.get(url, headers=auth, params={"per_page": 500}, timeout=5).json()
    oldest = requests.get(url, headers=auth, params={"after": 0, "per_page": 2}, timeout=5).json()
    assert len(newest) == 200
    assert newest[0] == emu.activities[-1]
    assert oldest == emu.activities[:2]
    default = requests.get(url, headers=auth, timeout=5).json()
    assert len(default) == 30


# -- tokens ----------------------------------------------------------------------------------


def refresh_with(emulator: StravaEmulator, token: str) -> requests.Response:
    return requests.post(
        f"{emulator.url}/oauth/token",
        data={
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": token,
        },
        timeout=5,
    )


def test_rotated_refresh_token_is_persisted_and_used_next_run(
    tmp_path: Path, bucket: LocalBucket
) -> None:
    # Tokens shorter than Strava's renewal hour: every run must refresh.
    emu = StravaEmulator(activities=20, token_lifetime=1800)
    with emu:
        store = TokenStore(tmp_path / "tokens")
        run(emu, bucket, tmp_path, "strava_athlete")
        first = store.read("strava")
        assert first and first["refresh_token"] != BOOTSTRAP_REFRESH_TOKEN
        assert set(first) >= {"access_token", "refresh_token", "expires_at"}
        # The bootstrap token from the environment is dead now...
        assert refresh_with(emu, BOOTSTRAP_REFRESH_TOKEN).status_code == 400
        # ...so the next run can only work by using the stored one.
        run(emu, bucket, tmp_path, "strava_athlete")
        second = store.read("strava")
        assert second and second["refresh_token"] != first["refresh_token"]
        assert emu.refreshes == 2
        assert first["refresh_token"] in emu.revoked
        assert second["access_token"] != first["access_token"]


def test_valid_stored_token_means_no_refresh(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_athlete")
    emu.reset_calls()
    run(emu, bucket, tmp_path, "strava_athlete")
    assert emu.calls_to("/oauth/token") == 0
    assert emu.refreshes == 1


def test_a_new_refresh_token_in_the_environment_wins_over_the_store(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_athlete")
    emu.refresh_tokens.add("re-authorized-refresh-token")  # the person re-authorized the app
    run(
        emu,
        bucket,
        tmp_path,
        "strava_athlete",
        env={"STRAVA_REFRESH_TOKEN": "re-authorized-refresh-token"},
    )
    assert "re-authorized-refresh-token" in emu.revoked
    assert emu.refreshes == 2
    # ...and from then on the store descends from it: no further refresh.
    run(
        emu,
        bucket,
        tmp_path,
        "strava_athlete",
        env={"STRAVA_REFRESH_TOKEN": "re-authorized-refresh-token"},
    )
    assert emu.refreshes == 2


def test_two_concurrent_runs_refresh_once(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    # A slow token endpoint keeps the first refresh in flight while the second run starts.
    emu.inject(Fault(status=0, delay=0.5, path="/oauth/token"))
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        try:
            results.append(run(emu, bucket, tmp_path, "strava_athlete"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert [m["records"] for m in results] == [1, 1]
    assert emu.refreshes == 1
    assert emu.calls_to("/oauth/token") == 1


# -- faults: the error map, and nothing committed -----------------------------------------


def fail(
    emulator: StravaEmulator,
    bucket: Bucket,
    tmp_path: Path,
    expected: type[IngestError],
    job: str = "strava_activities",
    env: dict[str, str] | None = None,
) -> IngestError:
    """Run a job that must fail with ``expected``: no manifest, no cursor move, an error object."""
    cursor = read_cursor(bucket, "strava", job)
    run_id = str(uuid.uuid4())
    with pytest.raises(expected) as caught:
        run(emulator, bucket, tmp_path, job, run_id=run_id, env=env)
    assert get_json(bucket, naming.manifest("strava", job, run_id)) is None
    assert read_cursor(bucket, "strava", job) == cursor
    assert not [o for o in bucket.list("strava/landing/") if naming.run8(run_id) in o.name]
    errors = [o.name for o in bucket.list("strava/errors/") if o.name.endswith(f"{run_id}.json")]
    assert len(errors) == 1
    body = get_json(bucket, errors[0])
    assert body["kind"] == expected.kind
    assert BOOTSTRAP_REFRESH_TOKEN not in json.dumps(body)
    return caught.value


def seconds_to_quarter() -> float:
    return 900 - time.time() % 900


def seconds_to_midnight() -> float:
    return 86400 - time.time() % 86400


def test_429_with_retry_after_is_retriable_after_that(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path)
    emu.add_activities(3)
    emu.inject(Fault(status=429, retry_after=120, path="/athlete/activities"))
    error = fail(emu, bucket, tmp_path, RetriableError)
    assert isinstance(error, RetriableError)
    assert error.retry_after == 120


def test_exhausted_15_minute_window_retries_at_the_next_quarter_hour(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.consume(100)
    error = fail(emu, bucket, tmp_path, RetriableError)
    assert isinstance(error, RetriableError) and error.retry_after is not None
    assert abs(error.retry_after - seconds_to_quarter()) < 5
    assert "429" in str(error)


def test_exhausted_daily_window_retries_after_midnight_utc(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.consume(3, daily=1000)
    error = fail(emu, bucket, tmp_path, RetriableError, job="strava_athlete")
    assert isinstance(error, RetriableError) and error.retry_after is not None
    assert abs(error.retry_after - seconds_to_midnight()) < 5


def test_window_spent_mid_run_stops_before_a_refused_call(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.consume(99)  # page 1 is the 100th read of this quarter hour; page 2 would be refused
    error = fail(emu, bucket, tmp_path, RetriableError)
    assert isinstance(error, RetriableError) and error.retry_after is not None
    assert abs(error.retry_after - seconds_to_quarter()) < 5
    assert activity_calls(emu) == 1
    assert emu.usage()[0] == 100


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retriable(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path, status: int
) -> None:
    emu.inject(Fault(status=status, path="/athlete/activities"))
    fail(emu, bucket, tmp_path, RetriableError)


def test_server_error_on_the_token_endpoint_is_retriable(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.inject(Fault(status=503, retry_after=30, path="/oauth/token"))
    error = fail(emu, bucket, tmp_path, RetriableError, job="strava_athlete")
    assert isinstance(error, RetriableError) and error.retry_after == 30


def test_timeout_is_retriable(emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path) -> None:
    emu.inject(Fault(status=0, delay=2.0, path="/athlete/activities"))
    started = time.monotonic()
    fail(emu, bucket, tmp_path, RetriableError, env={"ELA_HTTP_TIMEOUT": "0.5"})
    assert time.monotonic() - started < 2.0


def test_connection_refused_is_retriable(bucket: LocalBucket, tmp_path: Path) -> None:
    emu = StravaEmulator(activities=5)
    emu.start()
    env = emu.environ()
    emu.stop()
    with pytest.raises(RetriableError):
        run_job(
            CONFIG,
            "strava_athlete",
            run_id=str(uuid.uuid4()),
            scheduled_at=WHEN,
            bucket=bucket,
            environ={**env, "ELA_TOKEN_DIR": str(tmp_path / "tokens")},
        )


def test_malformed_json_is_a_payload_error_naming_the_page(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.inject(Fault(malformed=True, path="/athlete/activities"))
    error = fail(emu, bucket, tmp_path, PayloadError)
    assert "activities page 1: malformed JSON" in str(error)


def serve_instead(
    emu: StravaEmulator, index: int, replace: Callable[[dict[str, Any]], Any]
) -> None:
    """Serve ``replace(activity)`` in place of ``emu.activities[index]`` in list pages (the
    emulator itself needs every stored activity's start_date to page them)."""
    target = emu.activities[index]["id"]
    method, pattern, handler = next(r for r in emu.routes if r[1].pattern.endswith("activities$"))

    def tampered(request: Request, match: re.Match[str]) -> Response:
        answer = handler(request, match)
        if isinstance(answer.body, list):
            answer.body = [replace(a) if a["id"] == target else a for a in answer.body]
        return answer

    emu.routes[emu.routes.index((method, pattern, handler))] = (method, pattern, tampered)


@pytest.mark.parametrize(
    ("replace", "said"),
    [
        (lambda a: [a], "is not an object (a list)"),
        (lambda a: "an activity", "is not an object (a str)"),
        (lambda a: None, "is not an object (a NoneType)"),
        (lambda a: {k: v for k, v in a.items() if k != "id"}, "has no integer id"),
        (lambda a: {**a, "id": str(a["id"])}, "has no integer id"),
        (lambda a: {**a, "id": True}, "has no integer id"),
        (lambda a: {k: v for k, v in a.items() if k != "start_date"}, "has no valid start_date"),
        (lambda a: {**a, "start_date": "yesterday"}, "has no valid start_date"),
        (lambda a: {**a, "start_date": 1719824400}, "has no valid start_date"),
    ],
    ids=[
        "list",
        "string",
        "null",
        "no-id",
        "string-id",
        "bool-id",
        "no-start",
        "bad-start",
        "number-start",
    ],
)
def test_a_record_we_cannot_rely_on_is_a_payload_error_naming_its_position(
    emu: StravaEmulator,
    bucket: LocalBucket,
    tmp_path: Path,
    replace: Callable[[dict[str, Any]], Any],
    said: str,
) -> None:
    serve_instead(emu, 205, replace)  # page 2, sixth record
    error = fail(emu, bucket, tmp_path, PayloadError)
    assert f"activity #206 of this run {said}" in str(error)


def test_fields_we_do_not_rely_on_land_as_strava_sent_them(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    """Only id and start_date are checked (stravalib's model would refuse this one): the record
    lands unchanged, as the provider's JSON always does."""
    emu.activities[205]["moving_time"] = "a while"
    manifest = run(emu, bucket, tmp_path)
    assert landed(bucket, manifest) == emu.window(after=0)
    assert landed(bucket, manifest)[205]["moving_time"] == "a while"


def test_an_athlete_stravalib_refuses_lands_as_sent_with_a_warning(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.athlete["sex"] = 17
    manifest = run(emu, bucket, tmp_path, "strava_athlete")
    assert landed(bucket, manifest) == [emu.athlete]
    assert manifest["warnings"] == [
        "strava: athlete: stravalib's DetailedAthlete model refuses sex (literal_error); the "
        "profile lands as Strava sent it"
    ]


def test_an_athlete_that_is_not_an_object_is_a_payload_error(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.athlete = ["not", "a", "profile"]  # type: ignore[assignment]
    error = fail(emu, bucket, tmp_path, PayloadError, job="strava_athlete")
    assert "record #1" in str(error)


def test_401_is_reauth_naming_the_fix(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.inject(Fault(status=401, path="/athlete/activities"))
    error = fail(emu, bucket, tmp_path, ReauthError)
    assert "STRAVA_REFRESH_TOKEN" in str(error) and "ela auth strava" in str(error)


def test_revoked_access_is_reauth(emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path) -> None:
    run(emu, bucket, tmp_path, "strava_athlete")
    emu.revoke()  # the athlete removed the app: the stored access token is dead
    error = fail(emu, bucket, tmp_path, ReauthError)
    assert "ela auth strava" in str(error)


def test_revoked_refresh_token_is_reauth(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    emu.revoke()
    error = fail(emu, bucket, tmp_path, ReauthError, job="strava_athlete")
    assert "STRAVA_REFRESH_TOKEN" in str(error) and "ela auth strava" in str(error)


def test_access_token_refused_by_the_server_is_reauth_then_refreshed(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    run(emu, bucket, tmp_path, "strava_athlete")
    emu.expire_access_tokens()  # Strava no longer honours it although our store says 6 h left
    fail(emu, bucket, tmp_path, ReauthError, job="strava_athlete")
    # The refused access token was marked expired: the next run refreshes and recovers.
    assert run(emu, bucket, tmp_path, "strava_athlete")["records"] == 1
    assert emu.refreshes == 2


def test_missing_credentials_are_reauth(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    error = fail(emu, bucket, tmp_path, ReauthError, env={"STRAVA_CLIENT_SECRET": ""})
    assert "STRAVA_CLIENT_SECRET" in str(error)


# -- `ela auth strava` ------------------------------------------------------------------------


def test_authorize_stores_tokens_that_the_next_run_uses(
    emu: StravaEmulator, bucket: LocalBucket, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "tokens")
    said: list[str] = []

    def ask(prompt: str, secret: bool) -> str:
        # The person opens the URL, approves, and pastes the address they were sent to.
        url = said[-1].rsplit(" ", 1)[-1]
        assert url.startswith(emu.url + "/oauth/authorize?")
        assert "activity%3Aread_all" in url
        answer = requests.get(url, allow_redirects=False, timeout=5)
        assert answer.status_code == 302
        return str(answer.headers["Location"])

    env = environ(emu, tmp_path)
    env.pop("STRAVA_REFRESH_TOKEN")
    authorize(env, store, ask, said.append)
    tokens = store.read("strava")
    assert tokens and tokens["refresh_token"] in emu.refresh_tokens
    assert not any(tokens["refresh_token"] in line for line in said)
    emu.reset_calls()
    manifest = run_job(
        CONFIG,
        "strava_athlete",
        run_id=str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ=env,
    )
    assert manifest["records"] == 1
    assert emu.calls_to("/oauth/token") == 0


def test_authorize_with_a_refused_code_is_reauth(emu: StravaEmulator, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens")
    with pytest.raises(ReauthError, match="ela auth strava"):
        authorize(environ(emu, tmp_path), store, lambda prompt, secret: "stale-code", print)
    assert store.read("strava") is None


# -- a real worker ----------------------------------------------------------------------------


def test_tasks_run_on_a_real_worker(
    emu: StravaEmulator, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    handle = worker_factory(extra_env=environ(emu, tmp_path))
    bucket = LocalBucket(tmp_path / "bucket")  # the worker's default ELA_BUCKET_URL
    activities = handle.call("tasks.strava.activities", timeout=60)
    assert activities["records"] == 300
    assert landed(bucket, activities) == emu.window(after=0)
    athlete = handle.call("tasks.strava.athlete", timeout=60)
    assert landed(bucket, athlete) == [emu.athlete]
    assert emu.refreshes == 1  # the second task used the token the first one stored
    again = handle.call("tasks.strava.activities", timeout=60)
    assert again["records"] == 0 and again["api_calls"] == 1
