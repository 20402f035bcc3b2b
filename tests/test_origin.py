"""The origin's own files load unchanged (issue 11, point 1), and its legacy file migrates.

The fixtures under tests/fixtures/origin/ are the origin's dev, prd and legacy files written
from the origin's documented facts: double-quoted scalars, flow lists, trailing comments,
``cron``, ``command``, per-job ``environment``, ``dependencies``, no ``error_retention_days``.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from click.testing import CliRunner

from ela import command, naming
from ela import config as config_module
from ela.cli import main
from ela.errors import ConfigError, ReauthError
from ela.ops import migrate
from ela.pipeline import run_job
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.processes import REPO, CeleryProcess, wait_for
from ela.sinks import LocalBucket, get_json
from ela.tokens import TokenStore
from tests.conftest import WorkerFactory
from tests.test_config import GROUPS, ORIGIN

FIXTURES = REPO / "tests" / "fixtures" / "origin"
LEGACY = FIXTURES / "ingestion-config.yaml"
# The origin's globals and the retention the origin gave each env.
GLOBALS = {
    "dev": dict(retry_attempts=2, max_parallel_jobs=3, gcs_bucket="ela-dp-dev", timeout_minutes=15),
    "prd": dict(retry_attempts=3, max_parallel_jobs=5, gcs_bucket="ela-dp-prd", timeout_minutes=45),
}
RETENTION = {"dev": 7, "prd": 14}
PARIS = ZoneInfo("Europe/Paris")
DEPENDENCIES = {
    "spotify": [
        "SPOTIFY_CLIENT_ID",
        "SPOTIFY_CLIENT_SECRET",
        "SPOTIFY_REDIRECT_URI",
        "SPOTIFY_REFRESH_TOKEN",
    ],
    "strava": ["STRAVA_CLIENT_ID", "STRAVA_CLIENT_SECRET", "STRAVA_REFRESH_TOKEN"],
    "garmin": ["GARMIN_USERNAME", "GARMIN_PASSWORD"],
    "todoist": ["TODOIST_API_TOKEN"],
}


def origin(env: str) -> Path:
    return FIXTURES / f"ingestion-config-{env}.yaml"


@dataclasses.dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _ela(*args: str, env: dict[str, str] | None = None) -> Ran:
    """``ela ARGS`` in this process, with only ``env`` of the variables it reads set."""
    cleared: dict[str, str | None] = {"ELA_CONFIG": None, "ELA_ENV": None}
    cleared |= {name: None for names in DEPENDENCIES.values() for name in names}
    result = CliRunner().invoke(main, list(args), env={**cleared, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: what no user may see
    return Ran(result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize("env", ["dev", "prd"])
def test_the_origin_files_load_with_their_crons_parameters_groups_and_globals(env: str) -> None:
    config = config_module.load(origin(env))
    assert config.env == env and config.notices == ()
    assert config.global_.timezone == "Europe/Paris"
    for key, value in GLOBALS[env].items():
        assert getattr(config.global_, key) == value, key
    # No error_retention_days in the origin's files: the env's default.
    assert config.global_.error_retention_days == RETENTION[env]
    assert list(config.jobs) == list(ORIGIN)
    for name, (dev_cron, dev_params, prd_cron, prd_params) in ORIGIN.items():
        job = config.jobs[name]
        assert job.schedule == (dev_cron if env == "dev" else prd_cron), name
        # Parameters come from the command line (--limit, --days, --time-range).
        assert job.params() == (dev_params if env == "dev" else prd_params), name
        assert job.command and job.command.startswith("python -m src.connectors."), name
        assert job.environment == env and job.enabled, name
        assert job.dependencies == DEPENDENCIES[job.service], name
    assert {g: c.jobs for g, c in config.job_groups.items()} == GROUPS[env]
    spotify = config.services["spotify"]
    assert spotify.default_limit == (20 if env == "dev" else 50)
    assert spotify.data_types[0] == "recently_played"  # the origin's supported_data_types
    assert config.effective_limit("strava_activities") is None


@pytest.mark.parametrize(
    ("line", "service", "data_type", "params"),
    [
        ("python -m src.connectors.spotify.spotify_fetch recently_played --limit 20", "spotify",
         "recently_played", {"limit": 20}),
        ("python -m src.connectors.spotify.spotify_fetch top_tracks --limit 25 "
         "--time-range medium_term", "spotify", "top_tracks",
         {"limit": 25, "time_range": "medium_term"}),
        ("python -m src.connectors.strava.strava", "strava", "activities", {}),
        ("python -m src.connectors.strava.strava --athlete", "strava", "athlete", {}),
        ("python -m src.connectors.garmin.garmin_fetch sleep --days=2", "garmin", "sleep",
         {"days": 2}),
        ("uv run python3 src/connectors/todoist/todoist.py tasks", "todoist", "tasks", {}),
    ],
)  # fmt: skip
def test_command_lines_read_as_parameters(
    line: str, service: str, data_type: str, params: dict[str, object]
) -> None:
    parsed = command.parse(line)
    assert (parsed.service, parsed.data_type, parsed.params) == (service, data_type, params)


def _origin_with(env: str, old: str, new: str) -> str:
    text = origin(env).read_text()
    assert old in text, old
    return text.replace(old, new, 1)


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


SPOTIFY_RP = "spotify_fetch recently_played --limit 20"
BAD_COMMANDS = [
    ("garmin_fetch sleep --days 1", "garmin_fetch sleep --days 1 --limit 5",
     "--limit 5: does not apply to garmin/sleep (its parameters: days, "),
    (SPOTIFY_RP, "spotify_fetch recently_played --limit 500",
     "--limit 500: 500 is above what the spotify API returns for recently_played (50)"),
    (SPOTIFY_RP, "spotify_fetch saved_tracks --limit 20",
     "fetches saved_tracks but the job's data_type is 'recently_played'"),
    ("spotify." + SPOTIFY_RP, "strava.strava",
     "runs the strava fetcher but the job's service is 'spotify'"),
    (SPOTIFY_RP, "spotify_fetch recently_played --limit twenty",
     "--limit twenty: expected a positive whole number"),
    ("top_tracks --limit 25 --time-range medium_term", "top_tracks --limit 25 --time-range all",
     "--time-range all: expected one of short_term, medium_term, long_term"),
    (SPOTIFY_RP, "spotify_fetch recently_played --limit 20 --verbose", "unknown option --verbose"),
    (SPOTIFY_RP, "spotify_fetch", "names no data type"),
    ("todoist.todoist tasks", "todoist.todoist tasks --athlete", "--athlete is a Strava flag"),
    (SPOTIFY_RP, "spotify_fetch recently_played --limit 20 && echo done", "shell operators"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), BAD_COMMANDS, ids=[b[2] for b in BAD_COMMANDS])
def test_a_command_at_odds_with_its_job_is_reported_at_its_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = _origin_with("dev", old, new)
    path = tmp_path / "ingestion-config-dev.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    [hit] = [p for p in caught.value.problems if message in p]
    assert hit.startswith(f"{path}:{_line_of(text, new)}: jobs."), hit
    assert ".command: " in hit


def test_a_parameter_given_twice_must_agree(tmp_path: Path) -> None:
    text = _origin_with("dev", f'{SPOTIFY_RP}"\n', f'{SPOTIFY_RP}"\n    limit: 30\n')
    with pytest.raises(ConfigError, match="--limit 20 disagrees with limit: 30; keep one"):
        config_module.loads(text, "ingestion-config-dev.yaml")
    same = _origin_with("dev", f'{SPOTIFY_RP}"\n', f'{SPOTIFY_RP}"\n    limit: 20\n')
    assert config_module.loads(same).jobs["spotify_recently_played"].limit == 20


def test_a_job_for_the_other_environment_is_refused(tmp_path: Path) -> None:
    text = _origin_with("dev", '    environment: "dev"', '    environment: "prd"')
    with pytest.raises(ConfigError) as caught:
        config_module.loads(text, "ingestion-config-dev.yaml")
    [hit] = caught.value.problems
    line = _line_of(text, 'environment: "prd"')
    assert hit.startswith(f"ingestion-config-dev.yaml:{line}:")
    assert "jobs.spotify_recently_played.environment: is 'prd' but global.environment" in hit


def test_the_old_schedule_key_loads_with_a_notice_and_cron_is_the_key(tmp_path: Path) -> None:
    ours = (REPO / "ingestion-config-dev.yaml").read_text()
    jobs = config_module.load(REPO / "ingestion-config-dev.yaml").jobs
    assert "    schedule:" not in ours and ours.count("    cron:") == len(jobs)
    old = ours.replace('    cron: "0 9 * * *"', '    schedule: "0 9 * * *"')
    path = tmp_path / "ingestion-config-dev.yaml"
    path.write_text(old)
    config = config_module.load(path)
    assert config.jobs["todoist_projects"].schedule == "0 9 * * *"
    line = _line_of(old, "schedule:")
    assert config.notices == (
        f"{path}:{line}: jobs.todoist_projects.schedule: the key is now cron, as in the "
        "origin's files; rename it (schedule still loads)",
    )
    result = _ela("validate", str(path))
    assert result.returncode == 0
    assert f"note: {path}:{line}: jobs.todoist_projects.schedule: the key is now cron" in (
        result.stdout
    )
    both = old.replace(
        '    schedule: "0 9 * * *"', '    schedule: "0 9 * * *"\n    cron: "0 8 * * *"'
    )
    with pytest.raises(ConfigError, match="both schedule and cron are set; keep only cron"):
        config_module.loads(both)


def test_the_legacy_file_is_pointed_at_migrate() -> None:
    result = _ela("validate", str(LEGACY))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "global.gcs_bucket_dev: a key of the origin's legacy single file; `ela config " in (
        result.stdout
    )
    assert f"ela config migrate {LEGACY}` turns that file" in result.stdout


def test_validate_and_schedule_accept_the_origin_files() -> None:
    result = _ela("validate", str(origin("dev")), str(origin("prd")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "env dev, 13 jobs (13 enabled), 5 groups, bucket ela-dp-dev, timezone Europe/Paris" in (
        result.stdout
    )
    assert "env prd, 13 jobs (13 enabled), 6 groups" in result.stdout
    shown = _ela("schedule", "--env", "prd", env={"ELA_CONFIG": str(origin("prd"))})
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("spotify_top_tracks"))
    assert "0 9 1 * *" in row and "limit=50 time_range=medium_term" in row
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
    assert " 09:00 CET (08:00Z)" in row or " 09:00 CEST (07:00Z)" in row


# -- dependencies -------------------------------------------------------------------------------


def test_validate_check_env_reports_every_unset_dependency_of_the_file() -> None:
    environ = {"SPOTIFY_CLIENT_ID": "x", "TODOIST_API_TOKEN": "t"}
    result = _ela("validate", "--check-env", str(origin("dev")), env=environ)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if ".dependencies: " in line]
    text = origin("dev").read_text()
    first = _line_of(text, '"SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET"')
    assert lines[0] == (
        f"{origin('dev')}:{first}: jobs.spotify_recently_played.dependencies: "
        "SPOTIFY_CLIENT_SECRET, SPOTIFY_REDIRECT_URI, SPOTIFY_REFRESH_TOKEN not set; "
        "the job refuses to run without them"
    )
    named = {line.split(".dependencies")[0].rsplit("jobs.", 1)[1] for line in lines}
    assert named == set(ORIGIN) - {"todoist_tasks", "todoist_projects"}
    full = {name: "set" for names in DEPENDENCIES.values() for name in names}
    ok = _ela("validate", "--check-env", str(origin("dev")), env=full)
    assert ok.returncode == 0 and ".dependencies" not in ok.stdout


# -- ela config migrate -------------------------------------------------------------------------


def test_migrate_splits_the_legacy_file_with_nothing_dropped(tmp_path: Path) -> None:
    result = _ela("config", "migrate", str(LEGACY), "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    legacy_text = LEGACY.read_text()
    for env in config_module.ENVS:
        written = tmp_path / f"ingestion-config-{env}.yaml"
        config = config_module.load(written)
        assert config.env == env and config.global_.gcs_bucket == f"ela-dp-{env}"
        assert config.global_.timezone == "Europe/Paris"  # the zone the origin read crons in
        assert config.global_.timeout_minutes == 30 and config.global_.retry_attempts == 2
        assert config.global_.error_retention_days == RETENTION[env]
        assert len(config.jobs) == 13 and all(job.enabled for job in config.jobs.values())
        # Every line of the legacy file is there but the two bucket keys: comments, quoting,
        # flow lists and commands included; the file gains its bucket and environment.
        text = written.read_text()
        kept = [line for line in legacy_text.splitlines() if "gcs_bucket_" not in line]
        assert [line for line in text.splitlines() if line in kept] == kept
        added = [line for line in text.splitlines() if line not in legacy_text.splitlines()]
        assert added[-2:] == [f'  environment: "{env}"', f'  gcs_bucket: "ela-dp-{env}"']
    prd = config_module.load(tmp_path / "ingestion-config-prd.yaml")
    assert prd.jobs["spotify_saved_tracks"].params() == {"limit": 500}
    assert prd.jobs["garmin_sleep"].params() == {"days": 2}
    assert prd.job_groups["weekly_jobs"].jobs == ["spotify_saved_tracks", "strava_athlete"]
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert notes == [
        f"note: {LEGACY}:{_line_of(legacy_text, key)}: global.{key}: one value ({value}) for "
        f"both environments; kept in both (the origin's are {dev} dev / {prd_value} prd)"
        for key, value, dev, prd_value in [
            ("retry_attempts", 2, 2, 3),
            ("max_parallel_jobs", 3, 3, 5),
            ("timeout_minutes", 30, 15, 45),
        ]
    ]


def test_migrate_leaves_out_only_what_the_format_refuses_and_says_why(tmp_path: Path) -> None:
    legacy = tmp_path / "ingestion-config.yaml"
    legacy.write_text(
        LEGACY.read_text()
        .replace("  timeout_minutes: 30\n", '  timeout_minutes: 30\n  log_level: "INFO"\n')
        .replace(
            'todoist.todoist tasks"\n    enabled: true\n',
            'todoist.todoist tasks"\n    environment: "dev"\n    enabled: true\n',
        )
        .replace("garmin_fetch sleep --days 2", "garmin_fetch sleep --days 2 --limit 9")
    )
    result = migrate.migrate(legacy)
    text = legacy.read_text()
    assert (
        f"{legacy}:{_line_of(text, 'log_level')}: global.log_level: unknown key" in result.notes[3]
    )
    sleep_line = _line_of(text, "--limit 9")
    assert (
        f"{legacy}:{sleep_line}: jobs.garmin_sleep.command: --limit 9: does not apply to "
        "garmin/sleep (its parameters: days, settle_hours, user_timezone); the job is left out"
    ) in result.notes
    tasks_line = _line_of(text, 'environment: "dev"')
    assert (
        f"{legacy}:{tasks_line}: jobs.todoist_tasks.environment: dev only: written into the "
        "prd file disabled (enabled: false)"
    ) in result.notes
    for env, config in result.configs.items():
        assert "garmin_sleep" not in config.jobs and len(config.jobs) == 12
        assert "garmin_sleep" not in config.job_groups["daily_jobs"].jobs
        assert config.jobs["todoist_tasks"].enabled is (env == "dev")
        assert config.jobs["todoist_tasks"].environment == env


def test_migrate_refuses_to_overwrite_and_bad_inputs(tmp_path: Path) -> None:
    first = _ela("config", "migrate", str(LEGACY), "--out-dir", str(tmp_path))
    assert first.returncode == 0
    again = _ela("config", "migrate", str(LEGACY), "--out-dir", str(tmp_path))
    assert again.returncode == 1 and "pass --force" in again.stderr
    forced = _ela("config", "migrate", str(LEGACY), "--out-dir", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    for path, content, message in [
        (tmp_path / "nope.yaml", None, "nope.yaml:1: cannot read the file"),
        (tmp_path / "legacy.yaml", "jobs: {a: [\n", "not valid YAML"),
        (tmp_path / "nojobs.yaml", "global: {}\n", "expected a jobs mapping"),
    ]:
        if content is not None:
            path.write_text(content)
        bad = _ela("config", "migrate", str(path), "--out-dir", str(tmp_path))
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and message in bad.stderr


def test_a_run_refuses_to_start_naming_every_unset_dependency(tmp_path: Path) -> None:
    """Spotify's own check named SPOTIFY_CLIENT_SECRET alone here (the refresh token was a
    second error, after the user fixed the first); the origin's workflow named them all."""
    config = config_module.load(origin("dev"))
    bucket = LocalBucket(tmp_path / "bucket")
    with SpotifyEmulator(plays=50) as spotify:
        environ = {
            k: v
            for k, v in spotify.environ().items()
            if k not in ("SPOTIFY_CLIENT_SECRET", "SPOTIFY_REFRESH_TOKEN")
        } | {"ELA_TOKEN_DIR": str(tmp_path / "tokens")}
        with pytest.raises(ReauthError) as caught:
            run_job(
                config,
                "spotify_recently_played",
                run_id=str(uuid.uuid4()),
                scheduled_at=datetime(2026, 11, 25, 14, tzinfo=UTC),
                bucket=bucket,
                environ=environ,
            )
        assert spotify.calls == []  # refused before any request
    message = str(caught.value)
    assert message == (
        "spotify_recently_played: SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN not set (the "
        "job's dependencies); set them in the environment (.env for docker compose) and run "
        "it again"
    )
    [error] = [o.name for o in bucket.list("spotify/errors/")]
    assert get_json(bucket, error)["message"] == message
    assert list(bucket.list("spotify/landing/")) == list(bucket.list("spotify/_runs/")) == []


@pytest.mark.timeout(180)
@pytest.mark.parametrize("env", ["dev", "prd"])
def test_a_real_worker_and_beat_take_the_origin_file_as_it_is(
    worker_factory: WorkerFactory, tmp_path: Path, env: str
) -> None:
    limit = 20 if env == "dev" else 50  # the command's --limit
    with SpotifyEmulator(plays=300) as spotify:
        assert isinstance(spotify, SpotifyEmulator)
        spotify.prepare_tokens(TokenStore(tmp_path / "tokens"))
        worker = worker_factory(extra_env=spotify.environ(), env=env, config=origin(env))
        manifest = worker.call("tasks.spotify.recently_played", job="spotify_recently_played")
    assert manifest["outcome"] == "succeeded" and manifest["env"] == env
    assert manifest["params"] == {"limit": limit} and manifest["records"] == limit
    [obj] = manifest["objects"]
    assert obj["name"].endswith(f"_{naming.run8(manifest['run_id'])}_spotify_recently_played.jsonl")

    # Beat builds every entry from the file and baselines each one's latest tick in Redis.
    beat = CeleryProcess(["beat", "-l", "info"], worker.environ, tmp_path / "beat.log")
    client = redis.Redis.from_url(worker.environ["REDIS_URL"])
    prefix = (worker.client.conf.broker_transport_options or {}).get("global_keyprefix", "")
    ledger = f"{prefix}ela:{env}:beat:ticks"  # beat_schedules/scheduler.py's TickLedger
    try:
        beat.wait_log("beat: leading this environment", timeout=60)
        wait_for(lambda: all(client.hexists(ledger, name) for name in ORIGIN), 30, "the ledger")
        ticks = {name: float(client.hget(ledger, name) or 0) for name in ORIGIN}
    finally:
        beat.stop()
        client.close()
    assert "Traceback" not in beat.log()
    config = config_module.load(origin(env))
    now = datetime.now(UTC)
    for name, job in config.jobs.items():
        if job.cron.fields[2:] != ("*", "*", "*"):
            continue  # weekly and monthly: the last tick may be older than beat looks back
        # Daily and hourly jobs: the tick beat found last is the job's latest in Paris.
        latest = job.cron.previous_run(PARIS, now)
        assert datetime.fromtimestamp(ticks[name], UTC) == latest, name
