"""What real APIs send that a connector must survive, on every provider (issue 10, 5/7/8/9).

Schema drift lands as sent; a source that loops, a body too big (compressed or not) and a run
that outgrows its spool end as one ``payload`` error naming the page, commit nothing and leave no
spool file; no credential ever leaves the configured hosts; and one status map means one kind
per status whatever the provider. Each behaviour is an emulator switch (``ela/sandbox/emulators``),
driven through the real client libraries.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import itertools
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ela import config as config_module
from ela import limits
from ela.connectors import data_type
from ela.connectors.base import (
    FetchContext,
    Paginator,
    http_error,
    in_order,
    read_ahead,
    read_body,
)
from ela.endpoints import Hosts
from ela.errors import FatalError, IngestError, PayloadError, RetriableError
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators.registry import emulator_for
from ela.sandbox.emulators.server import Drift, Emulator, Fault
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.emulators.todoist import TodoistEmulator, cursor_for
from ela.sandbox.processes import REPO
from ela.sinks import LocalBucket, jsonl_line
from ela.state import read_cursor
from ela.tokens import TokenStore
from tests.conftest import read_jsonl
from tests.test_garmin import heart_rate_landed, sleep_landed

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
WHEN = datetime.now(UTC).replace(second=0, microsecond=0)
SERVICES = ("spotify", "strava", "garmin", "todoist")
# A paged job of each provider, and what its pages' path contains.
PAGED = {
    "spotify": ("spotify_saved_tracks", "/me/tracks"),
    "strava": ("strava_activities", "/athlete/activities"),
    "garmin": ("garmin_activities", "search/activities"),
    "todoist": ("todoist_tasks", "/tasks"),
}
# Drift each provider's records in ways its client library's model (where it has one) refuses,
# leaving alone what our connectors key on (ids, start_date, played_at, calendarDate).
DRIFT = {
    "todoist": Drift(
        drop=("can_assign_tasks", "updated_at"),
        add={"ela_new_field": {"since": "2026"}},
        retype={"is_favorite": "yes", "priority": "p1"},
    ),
    "strava": Drift(
        drop=("resource_state",),
        add={"ela_new_field": [1, 2]},
        retype={"sex": 17, "kudos_count": "many", "premium": "yes"},
    ),
    "spotify": Drift(
        drop=("added_at", "context", "snapshot_id"),
        add={"ela_new_field": None},
        retype={"popularity": "high", "public": "yes"},
    ),
    "garmin": Drift(
        drop=("userProfilePK", "ownerId"),
        add={"ela_new_field": True},
        retype={"restingHeartRate": "low", "distance": "far"},
    ),
}


class Providers:
    """A fresh emulator of every provider, the environment reaching them, one bucket."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.tokens = tmp_path / "tokens"
        self.environ: dict[str, str] = {"ELA_TOKEN_DIR": str(self.tokens)}
        self.emulators: dict[str, Emulator] = {}
        self.bucket = LocalBucket(tmp_path / "bucket")

    def __getitem__(self, service: str) -> Emulator:
        return self.emulators[service]

    def run(
        self,
        job: str,
        bucket: LocalBucket | None = None,
        overrides: Overrides | None = None,
        **env: str,
    ) -> dict[str, Any]:
        return run_job(
            CONFIG,
            job,
            run_id=str(uuid.uuid4()),
            scheduled_at=WHEN,
            bucket=bucket or self.bucket,
            environ={**self.environ, **env},
            overrides=overrides or Overrides(),
        )

    def landed(self, manifest: dict[str, Any], bucket: LocalBucket | None = None) -> list[Any]:
        where = bucket or self.bucket
        return [r for o in manifest["objects"] for r in read_jsonl(where.get_bytes(o["name"]))]

    def assert_committed_nothing(self, service: str, job: str) -> None:
        assert list(self.bucket.list(f"{service}/landing/")) == []
        assert list(self.bucket.list(f"{service}/_runs/")) == []
        assert read_cursor(self.bucket, service, job) is None
        [error] = list(self.bucket.list(f"{service}/errors/"))
        assert json.loads(self.bucket.get_bytes(error.name) or b"")["kind"] == "payload"


@pytest.fixture
def providers(tmp_path: Path) -> Iterator[Providers]:
    found = Providers(tmp_path)
    with contextlib.ExitStack() as stack:
        for service in SERVICES:
            emulator = emulator_for(service)
            assert emulator is not None
            stack.enter_context(emulator)
            emulator.prepare_tokens(TokenStore(found.tokens))
            found.environ.update(emulator.environ())
            found.emulators[service] = emulator
        yield found


@pytest.fixture
def foreign() -> Iterator[Emulator]:
    """Another host: a server no credential may reach. Links name it ``localhost`` so that, to
    the clients, it is another host than the providers' ``127.0.0.1``."""
    with Emulator() as server:
        yield server


def elsewhere(server: Emulator) -> str:
    return server.url.replace("127.0.0.1", "localhost")


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder every temporary file of this process goes to (the run's spool included)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def assert_no_spool_left(folder: Path) -> None:
    """Nothing in the folder, and no file of it still open (an unlinked spool holds its disk
    space until it is closed)."""
    assert list(folder.iterdir()) == []
    still_open = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                still_open.append(target)
    assert still_open == []


def within(seconds: float, call: Callable[[], Any], stop: Callable[[], None]) -> Any:
    """``call()``'s result (or what it raised) if it ends within ``seconds``; otherwise
    ``stop()`` (so a runaway stops spooling) and fail."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        stop()
        thread.join(30)
        pytest.fail(f"still running after {seconds} s: nothing stopped the runaway source")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# -- the contract's pieces (pure) ---------------------------------------------------------------


def walk(pages: Paginator, bodies: dict[Any, tuple[list[Any], Any]]) -> list[Any]:
    """Every record of ``bodies`` (token → (records, next token)) the paginator lets through."""
    seen: list[Any] = []
    while pages.has_more:
        records, following = bodies[pages.token]
        seen.extend(pages.read(records))
        pages.advance(following)
    return seen


def test_the_paginator_walks_pages_until_there_is_no_next_token() -> None:
    ctx = FetchContext(job="j", now=WHEN, environ={})
    pages = Paginator("todoist: tasks", ctx)
    bodies = {None: ([{"id": 1}], "c2"), "c2": ([{"id": 2}], "c3"), "c3": ([], None)}
    assert walk(pages, bodies) == [{"id": 1}, {"id": 2}]
    assert (pages.number, ctx.page) == (3, "todoist: tasks page 3")


def test_the_paginator_refuses_a_token_it_has_seen() -> None:
    bodies = {None: ([{"id": 1}], "c2"), "c2": ([{"id": 2}], "c3"), "c3": ([{"id": 3}], "c2")}
    with pytest.raises(PayloadError) as caught:
        walk(Paginator("todoist: tasks"), bodies)
    assert str(caught.value) == (
        "todoist: tasks page 4: its token 'c2' is page 2's again: the source loops; "
        "nothing was committed"
    )


def test_the_paginator_refuses_a_page_that_repeats_an_earlier_one() -> None:
    """Paging by number: the token is new every time, the records are not."""
    a, b = [{"id": 1}, {"id": 2}], [{"id": 3}, {"id": 4}]
    bodies = {1: (a, 2), 2: (b, 3), 3: (list(a), 4), 4: ([], None)}
    with pytest.raises(PayloadError, match=r"^strava: activities page 3 repeats page 1 \(the "):
        walk(Paginator("strava: activities", token=1), bodies)
    # The same records in another order, or one more, are another page.
    bodies = {1: (a, 2), 2: (a[::-1], 3), 3: ([*a, {"id": 5}], None)}
    assert len(walk(Paginator("strava: activities", token=1), bodies)) == 7


def test_read_ahead_makes_the_next_items_while_the_consumer_works() -> None:
    """The producer goes on without waiting for the consumer: one item waits, one is made."""
    made: list[int] = []
    third = threading.Event()

    def produce(settle: Callable[[], None]) -> Iterator[int]:
        for n in range(1, 7):
            made.append(n)
            if n == 3:
                third.set()
            yield n

    items = read_ahead(produce, "test-ahead")
    assert next(items) == 1
    assert third.wait(5)  # 2 waits, 3 is made, while the consumer holds 1
    time.sleep(0.1)
    assert made == [1, 2, 3]
    assert list(items) == [2, 3, 4, 5, 6]


class Calls:
    """A fetch that takes ``seconds`` and counts how many of its calls run at once, and in
    which threads."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.threads: list[str] = []

    def __call__(self, key: int) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return key * 10


def test_in_order_sends_calls_beside_the_consumers_work_only_when_they_wait() -> None:
    """Calls answered at once are made in the consumer's thread, one by one. Calls that wait
    longer than a thread switch go to a pool after the second, up to the limit in flight.
    Either way every result comes once, in key order. (A thread descheduled for more than a
    switch looks like one that waited: on a loaded machine two such calls in a row may open
    the pool, so the quick calls get three tries, each in order, one of them all inline.)"""
    inline = []
    for _ in range(3):
        quick = Calls(0)
        got = []
        for key, value in in_order(quick, range(40), 4, "test-order"):
            time.sleep(0.002)  # the consumer's work
            got.append((key, value))
        assert got == [(k, k * 10) for k in range(40)]
        inline.append(quick.most == 1 and set(quick.threads) == {threading.current_thread().name})
    assert any(inline)

    slow = Calls(0.02)
    assert list(in_order(slow, range(40), 4, "test-order")) == [(k, k * 10) for k in range(40)]
    assert slow.most == 4
    assert slow.threads[:2] == [threading.current_thread().name] * 2
    assert all(name.startswith("test-order") for name in slow.threads[2:])


def test_read_ahead_raises_the_producers_error_in_its_turn_and_stops_with_the_consumer() -> None:
    def failing(settle: Callable[[], None]) -> Iterator[int]:
        yield 1
        yield 2
        raise PayloadError("page 3 loops")

    seen = []
    with pytest.raises(PayloadError, match="page 3 loops"):
        for item in read_ahead(failing, "test-ahead"):
            seen.append(item)
    assert seen == [1, 2]

    made: list[int] = []

    def endless(settle: Callable[[], None]) -> Iterator[int]:
        for n in itertools.count(1):
            made.append(n)
            yield n

    before = threading.active_count()
    items = read_ahead(endless, "test-ahead")
    assert next(items) == 1
    items.close()  # the consumer stops: so does the producer, its thread gone
    assert threading.active_count() == before
    assert len(made) <= 3


def test_read_ahead_settle_waits_until_the_consumer_is_done_with_every_item() -> None:
    done: list[int] = []

    def produce(settle: Callable[[], None]) -> Iterator[int]:
        yield 1
        yield 2
        settle()
        yield len(done)  # what the consumer had finished when settle returned

    out = []
    for item in read_ahead(produce, "test-ahead"):
        time.sleep(0.05)  # a slow consumer
        out.append(item)
        done.append(item)
    assert out == [1, 2, 2]


@pytest.mark.parametrize(
    ("link", "routed"),
    [
        (
            "https://api.spotify.com/v1/me/tracks?offset=50",
            "http://127.0.0.1:9/v1/me/tracks?offset=50",
        ),
        ("https://api.spotify.com/v1?x=1", "http://127.0.0.1:9/v1?x=1"),
        ("https://accounts.spotify.com/api/token", "http://127.0.0.1:8/api/token"),
        ("http://127.0.0.1:9/v1/me", "http://127.0.0.1:9/v1/me"),  # already there
    ],
)
def test_hosts_move_library_urls_onto_the_configured_bases(link: str, routed: str) -> None:
    environ = {
        "SPOTIFY_API_URL": "http://127.0.0.1:9/v1/",
        "SPOTIFY_ACCOUNTS_URL": "http://127.0.0.1:8",
    }
    hosts = Hosts.of("spotify", environ, "SPOTIFY_API_URL", "SPOTIFY_ACCOUNTS_URL")
    assert hosts.route(link) == routed


@pytest.mark.parametrize(
    "link",
    [
        "https://api.spotify.com.evil.example/v1/me",  # a longer host, not a path under ours
        "https://evil.example/v1/me",
        "http://api.spotify.com/v1/me",  # another scheme is another origin
        "https://api.spotify.com:8443/v1/me",
        "https://user@evil.example/v1/me",
    ],
)
def test_hosts_refuse_every_other_host(link: str) -> None:
    hosts = Hosts.of("spotify", {}, "SPOTIFY_API_URL", "SPOTIFY_ACCOUNTS_URL")
    with pytest.raises(PayloadError, match="spotify: playlists page 2: refused to follow a link"):
        hosts.route(link, "playlists page 2")
    assert hosts.route("https://api.spotify.com/v1/me") == "https://api.spotify.com/v1/me"


@pytest.mark.parametrize(
    ("value", "size"), [("123", 123), ("32MB", 32 << 20), ("1g", 1 << 30), ("64 KiB", 64 << 10)]
)
def test_sizes_read_bytes_or_binary_units(value: str, size: int) -> None:
    assert limits.size({"ELA_MAX_BODY_BYTES": value}, "ELA_MAX_BODY_BYTES", 1) == size
    assert limits.size({}, "ELA_MAX_BODY_BYTES", 7) == 7


@pytest.mark.parametrize("value", ["0", "-5", "lots", "12TB", "1.5MB"])
def test_a_size_that_is_not_one_is_a_one_line_error(value: str) -> None:
    with pytest.raises(FatalError) as caught:
        limits.size({"ELA_MAX_SPOOL_BYTES": value}, "ELA_MAX_SPOOL_BYTES", 1)
    assert str(caught.value).startswith(f"ELA_MAX_SPOOL_BYTES={value!r} is not a size")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "retriable"), (408, "retriable"), (500, "retriable"), (503, "retriable"),
     (401, "reauth"), (403, "reauth"), (302, "payload"), (400, "fatal"), (404, "fatal"),
     (410, "fatal")],
)  # fmt: skip
def test_one_status_map(status: int, kind: str) -> None:
    error = http_error("strava", status, "/x", retry_after=3.0, location="https://evil.example/y")
    assert error.kind == kind
    assert str(error).startswith(f"strava: HTTP {status} from /x")
    if kind == "retriable":
        assert isinstance(error, RetriableError) and error.retry_after == 3.0
    if kind == "payload":
        assert "https://evil.example:443" in str(error)


def test_a_body_is_refused_as_soon_as_it_passes_the_cap() -> None:
    taken: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            taken.append(b"x" * 10)
            yield taken[-1]

    assert read_body(iter([b"ab", b"cd"]), 4, "w") == b"abcd"
    with pytest.raises(
        PayloadError, match=r"^w: the body goes on, more than ELA_MAX_BODY_BYTES \(25 "
    ):
        read_body(chunks(), 25, "w")
    assert len(taken) == 3  # not one chunk more than it took to know
    with pytest.raises(PayloadError, match="says it is 26 bytes"):
        read_body(chunks(), 25, "w", declared=26)


# -- 5. schema drift ----------------------------------------------------------------------------


# Strava laps and streams find no work on an empty bucket (they follow the activities landed):
# tests/test_strava_more.py has their drift and gzip cases.
READS_ON_ITS_OWN = sorted(
    n for n, j in CONFIG.jobs.items() if not data_type(j.service, j.data_type).follows
)


@pytest.mark.parametrize("job", READS_ON_ITS_OWN)
def test_drifted_records_land_as_the_provider_sent_them(providers: Providers, job: str) -> None:
    service = CONFIG.jobs[job].service
    plain_bucket = LocalBucket(providers.tmp_path / "plain")
    plain = providers.landed(providers.run(job, bucket=plain_bucket), plain_bucket)
    expected = [DRIFT[service].apply(r) for r in plain]
    providers[service].drift = DRIFT[service]

    manifest = providers.run(job)

    assert manifest["outcome"] == "succeeded"
    assert providers.landed(manifest) == expected
    assert any("ela_new_field" in r for r in expected)


def test_a_todoist_project_without_can_assign_tasks_lands_with_a_warning(
    providers: Providers,
) -> None:
    todoist = providers["todoist"]
    assert isinstance(todoist, TodoistEmulator)
    todoist.drift = Drift(drop=("can_assign_tasks",))

    manifest = providers.run("todoist_projects")

    assert providers.landed(manifest) == todoist.drifted(todoist.projects)
    [warning] = manifest["warnings"]
    assert "todoist-api-python" in warning and "can_assign_tasks" in warning


def test_stravalibs_own_recorded_athlete_lands_byte_for_byte(providers: Providers) -> None:
    """stravalib's recorded athlete (``agreed_to_terms: true``) fails its own pydantic model."""
    strava = providers["strava"]
    assert isinstance(strava, StravaEmulator)
    recorded = importlib.resources.files("stravalib") / "tests/resources/athlete.3.json"
    strava.athlete = json.loads(recorded.read_text())

    manifest = providers.run("strava_athlete")

    [obj] = manifest["objects"]
    line = (providers.bucket.get_bytes(obj["name"]) or b"").rstrip(b"\n")
    assert json.loads(line) == strava.athlete
    assert line == json.dumps(strava.athlete, ensure_ascii=False, separators=(",", ":")).encode()
    [warning] = manifest["warnings"]
    assert "stravalib" in warning and "agreed_to_terms" in warning


# -- 7. runaway sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "job", "overrides"),
    [
        ("todoist", "todoist_tasks", Overrides()),
        ("strava", "strava_activities", Overrides()),
        (
            "garmin",
            "garmin_activities",
            Overrides(since=WHEN - timedelta(days=364)),  # a year: more than two full pages
        ),
    ],
)
def test_a_looping_source_ends_as_a_payload_error_naming_the_page(
    providers: Providers, spool_dir: Path, service: str, job: str, overrides: Overrides
) -> None:
    emulator = providers[service]
    emulator.loop = True

    def stop() -> None:
        emulator.loop = False

    with pytest.raises(PayloadError, match=r"page \d+") as caught:
        within(20, lambda: providers.run(job, overrides=overrides), stop)

    assert "loops" in str(caught.value)
    providers.assert_committed_nothing(service, job)
    assert_no_spool_left(spool_dir)


def test_a_spotify_next_link_that_loops_back_is_never_followed_past_the_total(
    providers: Providers,
) -> None:
    spotify = providers["spotify"]
    assert isinstance(spotify, SpotifyEmulator)
    spotify.loop = True
    manifest = providers.run("spotify_saved_tracks", overrides=Overrides(limit=10_000))
    assert providers.landed(manifest) == json.loads(json.dumps(spotify.saved_tracks))


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_body_over_the_cap_ends_as_a_payload_error(
    providers: Providers, spool_dir: Path, service: str, compressed: bool
) -> None:
    """1 MB cap: 3 MB of whitespace after a real page (plain), or 64 MB of it behind gzip (a
    decompression bomb of about 64 KB on the wire)."""
    job, path = PAGED[service]
    emulator = providers[service]
    emulator.gzip = compressed
    emulator.inject(Fault(pad=(64 if compressed else 3) << 20, path=path))

    with pytest.raises(PayloadError, match="ELA_MAX_BODY_BYTES") as caught:
        providers.run(job, ELA_MAX_BODY_BYTES="1MB")

    assert path in str(caught.value)
    assert (emulator.compressed > 0) == compressed
    providers.assert_committed_nothing(service, job)
    assert_no_spool_left(spool_dir)


@pytest.mark.parametrize("job", READS_ON_ITS_OWN)
def test_gzip_bodies_land_exactly_as_plain_ones(providers: Providers, job: str) -> None:
    service = CONFIG.jobs[job].service
    plain_bucket = LocalBucket(providers.tmp_path / "plain")
    plain = providers.landed(providers.run(job, bucket=plain_bucket), plain_bucket)
    providers[service].gzip = True

    manifest = providers.run(job)

    assert providers[service].compressed >= 1
    assert providers.landed(manifest) == plain


def test_a_run_that_outgrows_the_spool_cap_ends_as_a_payload_error(
    providers: Providers, spool_dir: Path
) -> None:
    todoist = providers["todoist"]
    assert isinstance(todoist, TodoistEmulator)
    spooled = itertools.accumulate(len(jsonl_line(task)) for task in todoist.tasks)
    over = next(n for n, size in enumerate(spooled) if size > 200_000)  # 0-based

    with pytest.raises(PayloadError, match="ELA_MAX_SPOOL_BYTES") as caught:
        providers.run("todoist_tasks", ELA_MAX_SPOOL_BYTES="200000")

    page = over // 200 + 1  # pages of 200 tasks
    assert str(caught.value).startswith(f"todoist: tasks page {page}: ")
    assert f"at record #{over + 1};" in str(caught.value)
    providers.assert_committed_nothing("todoist", "todoist_tasks")
    assert_no_spool_left(spool_dir)


# -- 8. credentials stay on the configured hosts ------------------------------------------------


def test_a_spotify_next_link_to_another_host_is_refused(
    providers: Providers, foreign: Emulator
) -> None:
    spotify = providers["spotify"]
    assert isinstance(spotify, SpotifyEmulator)
    spotify.link_base = elsewhere(foreign)

    with pytest.raises(PayloadError, match="saved_tracks page 2") as caught:
        providers.run("spotify_saved_tracks")

    assert "localhost" in str(caught.value)
    assert foreign.calls == []
    providers.assert_committed_nothing("spotify", "spotify_saved_tracks")


@pytest.mark.parametrize("service", SERVICES)
def test_a_redirect_to_another_host_is_refused(
    providers: Providers, foreign: Emulator, service: str
) -> None:
    job, path = PAGED[service]
    providers[service].inject(Fault(redirect=f"{elsewhere(foreign)}/collect", path=path))

    with pytest.raises(PayloadError, match="localhost"):
        providers.run(job)

    assert foreign.calls == []
    providers.assert_committed_nothing(service, job)


# -- one status map ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), [(404, "fatal"), (400, "fatal"), (403, "reauth")])
def test_a_status_means_the_same_on_every_provider(
    providers: Providers, status: int, kind: str
) -> None:
    kinds = {}
    for service in SERVICES:
        job, path = PAGED[service]
        providers[service].inject(Fault(status, path=path))
        with pytest.raises(IngestError) as caught:
            providers.run(job)
        kinds[service] = caught.value.kind
        assert f"HTTP {status}" in str(caught.value)
    assert kinds == dict.fromkeys(SERVICES, kind)


# -- 9. real shapes ------------------------------------------------------------------------------


def test_todoist_cursors_are_opaque(providers: Providers) -> None:
    import requests

    todoist = providers["todoist"]
    assert isinstance(todoist, TodoistEmulator)
    headers = {"Authorization": f"Bearer {todoist.token}"}
    url = f"{todoist.api_url}/tasks"
    first = requests.get(url, params={"limit": 200}, headers=headers, timeout=5).json()
    assert first["next_cursor"] == cursor_for("tasks", 200) != "200"
    for made_up in ("200", cursor_for("projects", 200)):
        answer = requests.get(url, params={"cursor": made_up}, headers=headers, timeout=5)
        assert answer.status_code == 400
    assert todoist.tasks[0]["added_at"].endswith("Z") and "." in todoist.tasks[0]["added_at"]


def test_spotify_playlists_page_under_the_users_path(providers: Providers) -> None:
    spotify = providers["spotify"]
    assert isinstance(spotify, SpotifyEmulator)
    spotify.add_playlists(80)  # 120: three pages
    manifest = providers.run("spotify_playlists", overrides=Overrides(limit=10_000))
    assert providers.landed(manifest) == json.loads(json.dumps(spotify.playlists))
    assert spotify.calls_to("/v1/me/playlists") == 1
    assert spotify.calls_to(f"/v1/users/{spotify.user['id']}/playlists") == 2


@pytest.mark.parametrize("job", ["garmin_sleep", "garmin_heart_rate"])
def test_a_garmin_day_without_data_lands_as_garmin_sent_it(providers: Providers, job: str) -> None:
    from ela.sandbox.emulators.garmin import GarminEmulator

    garmin = providers["garmin"]
    assert isinstance(garmin, GarminEmulator)
    days = [garmin.last_day - timedelta(days=n) for n in range(3)][::-1]
    garmin.no_data_days = {days[1]}
    record_for = garmin.sleep_for if job == "garmin_sleep" else garmin.heart_rate_for
    landed_for = sleep_landed if job == "garmin_sleep" else heart_rate_landed

    manifest = providers.run(
        job, overrides=Overrides(since=datetime.combine(days[0], datetime.min.time(), UTC))
    )

    # As sent, with the day and data type the downstream reads (docs/landing.md).
    assert providers.landed(manifest) == [landed_for(garmin, d) for d in days]
    empty = record_for(days[1])
    assert (empty.get("heartRateValues") or empty.get("dailySleepDTO", {}).get("id")) is None


@pytest.mark.parametrize("service", SERVICES)
def test_a_body_that_is_not_utf8_lands_with_a_warning(providers: Providers, service: str) -> None:
    """A server with the wrong charset: requests used to replace the bad byte without a word,
    and Todoist's strict parse failed the whole run over it."""
    job, path = PAGED[service]
    providers[service].inject(Fault(latin1=True, path=path))

    manifest = providers.run(job)

    [warning] = [w for w in manifest["warnings"] if "not valid UTF-8" in w]
    assert "byte 0xe9" in warning and path in warning
    assert any("\ufffd" in json.dumps(r, ensure_ascii=False) for r in providers.landed(manifest))
