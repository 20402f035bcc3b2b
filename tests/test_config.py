"""Config validation: shipped files carry the origin facts; bad files fail precisely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ela import config as config_module
from ela.errors import ConfigError
from ela.sandbox.processes import REPO

# The origin's jobs (docs/configuration.md, "The jobs"), job by job:
# (dev cron, dev params, prd cron, prd params).
ORIGIN = {
    "spotify_recently_played": ("0 * * * *", {"limit": 20}, "0 */3 * * *", {"limit": 50}),
    "spotify_saved_tracks": ("0 10 * * *", {"limit": 100}, "0 6 * * 0", {"limit": 1000}),
    "spotify_saved_albums": ("0 11 * * *", {"limit": 50}, "0 7 * * 0", {"limit": 200}),
    "spotify_playlists": ("0 14 * * 1", {"limit": 25}, "0 8 1 * *", {"limit": 100}),
    "spotify_top_tracks": (
        "0 15 * * 1",
        {"limit": 25, "time_range": "medium_term"},
        "0 9 1 * *",
        {"limit": 50, "time_range": "medium_term"},
    ),
    "spotify_top_artists": (
        "0 16 * * 1",
        {"limit": 25, "time_range": "medium_term"},
        "0 10 1 * *",
        {"limit": 50, "time_range": "medium_term"},
    ),
    "strava_activities": ("0 */2 * * *", {}, "0 */6 * * *", {}),
    "strava_athlete": ("0 12 * * *", {}, "0 6 * * 1", {}),
    "garmin_activities": ("0 */2 * * *", {"days": 3}, "0 */4 * * *", {"days": 7}),
    "garmin_sleep": ("0 13 * * *", {"days": 1}, "0 8 * * *", {"days": 2}),
    "garmin_heart_rate": ("0 */4 * * *", {"days": 1}, "0 */8 * * *", {"days": 1}),
    "todoist_tasks": ("0 */2 * * *", {}, "0 */4 * * *", {}),
    "todoist_projects": ("0 9 * * *", {}, "0 7 * * *", {}),
}
SPOTIFY = [j for j in ORIGIN if j.startswith("spotify")]
FITNESS = [
    "strava_activities",
    "strava_athlete",
    "garmin_activities",
    "garmin_sleep",
    "garmin_heart_rate",
]
PRODUCTIVITY = ["todoist_tasks", "todoist_projects"]
GROUPS = {
    "dev": {
        "spotify_all": SPOTIFY,
        "fitness_all": FITNESS,
        "productivity_all": PRODUCTIVITY,
        "frequent_jobs": [
            "spotify_recently_played",
            "strava_activities",
            "garmin_activities",
            "todoist_tasks",
        ],
        "daily_jobs": ["spotify_saved_tracks", "garmin_sleep", "todoist_projects"],
    },
    "prd": {
        "spotify_all": SPOTIFY,
        "fitness_all": FITNESS,
        "productivity_all": PRODUCTIVITY,
        "daily_jobs": ["garmin_sleep", "todoist_projects"],
        "weekly_jobs": ["spotify_saved_tracks", "spotify_saved_albums", "strava_athlete"],
        "monthly_jobs": ["spotify_playlists", "spotify_top_tracks", "spotify_top_artists"],
    },
}
GLOBALS = {
    "dev": dict(
        retry_attempts=2,
        max_parallel_jobs=3,
        timeout_minutes=15,
        gcs_bucket="ela-dp-dev",
        error_retention_days=7,
        timezone="Europe/Paris",
    ),
    "prd": dict(
        retry_attempts=3,
        max_parallel_jobs=5,
        timeout_minutes=45,
        gcs_bucket="ela-dp-prd",
        error_retention_days=14,
        timezone="Europe/Paris",
    ),
}


@pytest.mark.parametrize("env", ["dev", "prd"])
def test_shipped_configs_carry_the_origin_facts(env: str) -> None:
    config = config_module.load(REPO / f"ingestion-config-{env}.yaml")
    assert config.env == env
    for key, value in GLOBALS[env].items():
        assert getattr(config.global_, key) == value, key
    assert set(ORIGIN) <= set(config.jobs)  # and the origin's other data types (issue 15)
    for name, (dev_cron, dev_params, prd_cron, prd_params) in ORIGIN.items():
        job = config.jobs[name]
        assert job.enabled
        assert job.schedule == (dev_cron if env == "dev" else prd_cron), name
        assert job.params() == (dev_params if env == "dev" else prd_params), name
        assert job.task == f"tasks.{job.service}.{job.data_type}"
        assert name == f"{job.service}_{job.data_type}"
    for name, job in config.jobs.items():
        assert name == f"{job.service}_{job.data_type}" and job.data_type in (
            config.services[job.service].data_types
        )
    origin_groups = {g: [j for j in c.jobs if j in ORIGIN] for g, c in config.job_groups.items()}
    assert origin_groups == GROUPS[env]


VALID = (REPO / "ingestion-config-dev.yaml").read_text()


def _edit(old: str, new: str, count: int = 1) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, count)


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


# (id, file text, fragment of the line the error must point at (None: line 1), message part)
BAD = [
    (
        "unknown-global-key",
        _edit("  retry_attempts: 2", "  retry_attempts: 2\n  colour: blue"),
        "colour: blue",
        "global.colour: unknown key",
    ),
    (
        "unknown-job-key",
        _edit("    data_type: tasks", "    data_type: tasks\n    retries: 3"),
        "retries: 3",
        "unknown key",
    ),
    (
        "bad-cron-range",
        _edit('"0 * * * *"', '"61 * * * *"'),
        '"61 * * * *"',
        "minute: 61 is outside 0-59",
    ),
    ("bad-cron-fields", _edit('"0 * * * *"', '"0 * * *"'), '"0 * * *"', "has 4 fields"),
    (
        "bad-cron-word",
        _edit('"0 9 * * *"', '"0 9 * * funday"'),
        "funday",
        "day-of-week: 'funday' is not a number",
    ),
    (
        "cron-both-day-fields",
        _edit('"0 9 * * *"', '"0 9 1 * 1"'),
        '"0 9 1 * 1"',
        "restricts both day-of-month and day-of-week",
    ),
    (
        "unknown-service",
        _edit("    service: todoist", "    service: notion"),
        "service: notion",
        "unknown service 'notion'",
    ),
    (
        "unknown-data-type",
        _edit("    data_type: projects", "    data_type: no_such_type"),
        "data_type: no_such_type",
        "'no_such_type' is not a todoist data type",
    ),
    (
        "group-missing-job",
        _edit("      - todoist_projects", "      - todoist_no_such_job"),
        "- todoist_no_such_job",
        "names job 'todoist_no_such_job', which is not defined",
    ),
    (
        "limit-above-api",
        _edit("    limit: 20", "    limit: 500"),
        "limit: 500",
        "above what the spotify API returns for recently_played (50)",
    ),
    (
        "top-limit-above-api",
        _edit("    limit: 25\n    time_range", "    limit: 99\n    time_range"),
        "limit: 99",
        "(50)",
    ),
    (
        "param-not-applicable",
        _edit("    data_type: tasks", "    data_type: tasks\n    days: 4"),
        "days: 4",
        "does not apply to todoist/tasks",
    ),
    (
        "bad-time-range",
        _edit("time_range: medium_term", "time_range: forever"),
        "time_range: forever",
        "time_range",
    ),
    (
        "wrong-env-bucket",
        _edit("gcs_bucket: ela-dp-dev", "gcs_bucket: ela-dp-prd"),
        "gcs_bucket",
        "is the prd bucket but this is the dev config",
    ),
    (
        "bad-timezone",
        _edit("  timezone: Europe/Paris", "  timezone: Mars/Olympus"),
        "Mars/Olympus",
        "not an IANA time zone",
    ),
    (
        "duplicate-job",
        VALID.rstrip().replace(
            "\nservices:",
            "\n  todoist_tasks:\n    service: todoist\n    data_type: tasks\n"
            "    cron: '0 1 * * *'\nservices:",
        ),
        None,
        "duplicate key",
    ),
    (
        "string-for-int",
        _edit("  retry_attempts: 2", "  retry_attempts: two"),
        "retry_attempts",
        "expected an integer, got 'two'",
    ),
    (
        "bool-for-int-limit",
        _edit("    limit: 20", "    limit: true"),
        "limit: true",
        "expected an integer",
    ),
    (
        "string-for-bool",
        _edit("    enabled: true", "    enabled: maybe", 1),
        "enabled: maybe",
        "expected true or false",
    ),
    (
        "negative-timeout",
        _edit("timeout_minutes: 15", "timeout_minutes: -5"),
        "timeout_minutes",
        "greater than or equal to 1",
    ),
    (
        "zero-parallel",
        _edit("max_parallel_jobs: 3", "max_parallel_jobs: 0"),
        "max_parallel_jobs",
        "greater than or equal to 1",
    ),
    (
        "bad-environment",
        _edit("environment: dev", "environment: staging"),
        "environment: staging",
        "environment",
    ),
    (
        "missing-cron",
        _edit('    cron: "0 9 * * *"  # Daily 09:00\n', ""),
        "todoist_projects:",
        "cron: required key is missing",
    ),
    (
        "group-not-list",
        _edit(
            "    jobs:\n      - todoist_tasks\n      - todoist_projects", "    jobs: todoist_tasks"
        ),
        "jobs: todoist_tasks",
        "expected a list",
    ),
    (
        "group-lists-twice",
        _edit(
            "      - todoist_tasks\n      - todoist_projects",
            "      - todoist_tasks\n      - todoist_tasks",
        ),
        None,
        "lists 'todoist_tasks' twice",
    ),
    (
        "group-named-like-job",
        _edit("  productivity_all:", "  todoist_tasks:"),
        None,
        "may not share its name with a job",
    ),
    (
        "bad-job-name",
        _edit("  todoist_tasks:\n    description", "  Todoist-Tasks:\n    description"),
        "Todoist-Tasks",
        "lower_snake_case",
    ),
    (
        "no-jobs",
        "global:\n  environment: dev\n  retry_attempts: 1\n  max_parallel_jobs: 1\n"
        "  gcs_bucket: ela-dp-dev\n  timeout_minutes: 5\n  error_retention_days: 7\njobs: {}\n",
        "jobs: {}",
        "at least 1 item",
    ),
    (
        "missing-global",
        "jobs:\n  a_b:\n    service: todoist\n    data_type: tasks\n    cron: '0 * * * *'\n",
        None,
        "global: required key is missing",
    ),
    ("empty-file", "", None, "the file is empty"),
    ("not-yaml", "global: [unclosed\n", None, "not valid YAML"),
    ("not-a-mapping", "- just\n- a list\n", None, "must be a mapping"),
    ("unknown-top-level", VALID + "extra_section: {}\n", "extra_section", "unknown key"),
    (
        "unknown-service-section",
        _edit("  todoist:\n    data_types", "  notion:\n    data_types"),
        "notion:",
        "unknown service",
    ),
    ("days-above-max", _edit("    days: 3", "    days: 5000"), "days: 5000", "above the maximum"),
    (
        "completeness-setting-not-applicable",
        _edit("    data_type: tasks", "    data_type: tasks\n    lookback_days: 7"),
        "lookback_days: 7",
        "does not apply to todoist/tasks",
    ),
    (
        "bad-user-time-zone",
        _edit("    days: 3", "    days: 3\n    user_timezone: Mars/Olympus"),
        "user_timezone: Mars/Olympus",
        "'Mars/Olympus' is not an IANA time zone",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_config_is_reported_at_its_line(
    tmp_path: Path, text: str, where: str | None, message: str
) -> None:
    path = tmp_path / "ingestion-config-dev.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    problems = caught.value.problems
    assert any(message in p for p in problems), problems
    hit = next(p for p in problems if message in p)
    assert hit.startswith(f"{path}:")
    line = int(hit.split(":")[1])
    if where is not None:
        assert line == _line_of(text, where), (hit, where)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = _edit("  timezone: Europe/Paris", "  timezone: Nowhere/Land")
    text = text.replace('"0 * * * *"', '"99 * * * *"').replace("    limit: 20", "    limit: 51")
    path = tmp_path / "ingestion-config-dev.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert len(caught.value.problems) == 3
    lines = [int(p.split(":")[1]) for p in caught.value.problems]
    assert lines == sorted(lines)


def test_prd_file_claiming_dev_is_an_env_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "ingestion-config-prd.yaml"
    path.write_text(VALID)  # the dev file, saved under the prd name
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert "file is named for 'prd'" in "\n".join(caught.value.problems)


def test_resolve_targets() -> None:
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    assert config.resolve("todoist_tasks") == ["todoist_tasks"]
    assert config.resolve("productivity_all")[:2] == ["todoist_tasks", "todoist_projects"]
    with pytest.raises(KeyError, match="neither a job nor a group"):
        config.resolve("weekly_jobs")  # a prd group
    assert config.job_for_task("tasks.spotify.recently_played") == "spotify_recently_played"


def _ela(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ela.cli", *args], cwd=REPO, capture_output=True, text=True
    )


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_validate_cli_ok_and_bad(tmp_path: Path) -> None:
    ok = _ela("validate")
    assert ok.returncode == 0, ok.stderr
    for env in ("dev", "prd"):
        count = len(config_module.load(REPO / f"ingestion-config-{env}.yaml").jobs)
        assert f"ingestion-config-{env}.yaml: ok — env {env}, {count} jobs" in ok.stdout

    bad = tmp_path / "ingestion-config-dev.yaml"
    bad.write_text(_edit('"0 * * * *"', '"0 25 * * *"'))
    result = _ela("validate", str(bad), str(REPO / "ingestion-config-prd.yaml"))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{bad}:{_line_of(bad.read_text(), '0 25 * * *')}: " in result.stdout
    assert "hour: 25 is outside 0-23" in result.stdout
    assert "ingestion-config-prd.yaml: ok" in result.stdout


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_cli_bad_env_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("global: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "ela.cli", "jobs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"ELA_CONFIG": str(bad), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{bad}:")


@pytest.mark.integration  # runs the `ela` command or a Python in a process
def test_missing_file_is_one_line(tmp_path: Path) -> None:
    result = _ela("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stdout.strip().endswith("cannot read the file: No such file or directory")
