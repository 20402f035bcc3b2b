"""Operations commands: status from the bucket, config diff, promote (migrate: test_origin)."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from ela import config as config_module
from ela import naming
from ela.cli import main
from ela.ops import promote, status
from ela.sandbox.processes import REPO
from ela.sinks import Bucket, put_json

# A Monday, half past an even hour in the configs' zone: 10:30 in Paris (CET, UTC+1).
NOW = datetime(2025, 11, 3, 9, 30, tzinfo=UTC)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def assert_one_line_error(result: Result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]


# -- status -------------------------------------------------------------------------------------


def write_run(
    bucket: Bucket,
    job: str,
    scheduled_at: datetime,
    *,
    records: int = 3,
    api_calls: int = 2,
    cpu_s: float | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> str:
    """A landing object and its manifest, shaped as ela.pipeline.run_job writes them.

    ``window``: an explicit since/until, as a backfill chunk runs (stamped with its end).
    """
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    spec = config.jobs[job]
    run_id = str(uuid.uuid4())
    landing = naming.landing(spec.service, spec.data_type, scheduled_at, run_id)
    body = b"".join(json.dumps({"id": i}).encode() + b"\n" for i in range(records))
    bucket.put_bytes(landing, body, "application/x-ndjson")
    manifest: dict[str, Any] = {
        "job": job,
        "service": spec.service,
        "data_type": spec.data_type,
        "task": spec.task,
        "env": "dev",
        "run_id": run_id,
        "attempt": 0,
        "scheduled_at": scheduled_at.isoformat(),
        "started_at": (scheduled_at + timedelta(seconds=1)).isoformat(),
        "finished_at": (scheduled_at + timedelta(seconds=5)).isoformat(),
        "duration_s": 4.0,
        "records": records,
        "objects": [{"name": landing, "size": len(body), "sha256": "x", "records": records}],
        "cursor_before": None,
        "cursor_after": None,
        "api_calls": api_calls,
        "params": spec.params(),
        "window": {
            "since": window[0].isoformat() if window else None,
            "until": window[1].isoformat() if window else None,
        },
        "warnings": [],
        "dry_run": False,
        "bucket": bucket.url,
    }
    if cpu_s is not None:
        manifest["cpu_s"] = cpu_s
    put_json(bucket, naming.manifest(spec.service, job, run_id), manifest)
    return run_id


def write_error(bucket: Bucket, job: str, service: str, failed_at: datetime) -> str:
    run_id = str(uuid.uuid4())
    body = {
        "job": job,
        "env": "dev",
        "run_id": run_id,
        "attempt": 2,
        "kind": "retriable",
        "error": "RetriableError",
        "message": "todoist answered 503",
        "scheduled_at": failed_at.replace(minute=0).isoformat(),
        "failed_at": failed_at.isoformat(),
        "cursor": None,
        "api_calls": 1,
        "where": ["todoist.py:10 in fetch"],
    }
    put_json(bucket, naming.error(service, job, run_id, failed_at), body)
    return run_id


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.integration)])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    """The same status tests against a local folder and the GCS emulator."""
    fixture = "local_bucket" if request.param == "local" else "gcs_bucket"
    value: Bucket = request.getfixturevalue(fixture)
    return value


def seed_runs(bucket: Bucket) -> dict[str, str]:
    """Fresh, one tick late and two ticks late jobs (every-2-hours crons) at NOW, 10:30 local."""
    hours = timedelta(hours=1)
    return {
        # "0 */2 * * *": the 10:00 tick ran.
        "todoist_tasks": write_run(bucket, "todoist_tasks", NOW - 0.5 * hours, cpu_s=1.25),
        # "0 */2 * * *": last success 08:00, the 10:00 tick missed.
        "strava_activities": write_run(bucket, "strava_activities", NOW - 2.5 * hours),
        # "0 */2 * * *": last success 06:00, 08:00 and 10:00 missed.
        "garmin_activities": write_run(bucket, "garmin_activities", NOW - 4.5 * hours),
    }


def test_status_freshness_from_manifests_and_errors(bucket: Bucket) -> None:
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    # An older success of todoist_tasks must not hide the newest one.
    write_run(bucket, "todoist_tasks", NOW - 6.5 * timedelta(hours=1), records=1)
    runs = seed_runs(bucket)
    failed = write_error(bucket, "todoist_tasks", "todoist", NOW - timedelta(minutes=20))
    write_error(bucket, "todoist_projects", "todoist", NOW - timedelta(days=2))

    report = status.collect(config, bucket, now=NOW)
    by_job = {job.job: job for job in report.jobs}

    fresh = by_job["todoist_tasks"]
    assert fresh.freshness.state == "fresh" and fresh.freshness.missed_ticks == 0
    assert fresh.last_success is not None
    assert fresh.last_success["run_id"] == runs["todoist_tasks"]
    assert fresh.last_success["records"] == 3 and fresh.last_success["duration_s"] == 4.0
    assert fresh.last_failure is not None and fresh.last_failure["run_id"] == failed
    assert status.failing_since_success(fresh)

    late = by_job["strava_activities"].freshness
    assert (late.state, late.missed_ticks, late.stale) == ("late", 1, False)
    assert late.behind_s == 2 * 3600

    stale = by_job["garmin_activities"].freshness
    assert (stale.state, stale.missed_ticks, stale.stale) == ("stale", 2, True)
    assert stale.due_at == NOW.replace(minute=0)

    assert by_job["todoist_projects"].freshness.state == "never"
    assert by_job["todoist_projects"].last_failure is not None
    assert by_job["spotify_recently_played"].last_success is None


def test_status_is_right_after_a_backfill_wrote_many_chunks(bucket: Bucket) -> None:
    """Backfill chunks are stamped with their window's end, years back; written after the job's
    own run, they used to be taken for its last run: 'stale: 5,836 ticks missed'."""
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    tick = NOW.replace(minute=0)  # strava_activities runs every two hours; 10:00 is due
    own = write_run(bucket, "strava_activities", tick)
    for month in range(1, 13):  # a year of monthly chunks, written after the run
        start = datetime(2024, month, 1, tzinfo=UTC)
        write_run(bucket, "strava_activities", start + timedelta(days=27), window=(start, start))
    report = status.collect(config, bucket, now=NOW)
    job = next(j for j in report.jobs if j.job == "strava_activities")
    assert job.last_success is not None and job.last_success["run_id"] == own
    assert (job.freshness.state, job.freshness.missed_ticks) == ("fresh", 0)


def test_status_stats_over_window(bucket: Bucket) -> None:
    config = config_module.load(REPO / "ingestion-config-dev.yaml")
    seed_runs(bucket)
    write_run(bucket, "todoist_tasks", NOW - timedelta(hours=2.5), records=4, api_calls=5)
    write_run(bucket, "todoist_tasks", NOW - timedelta(days=3), records=100)  # outside 1d

    report = status.collect(config, bucket, now=NOW, window=timedelta(days=1))
    stats = {job.job: job.as_json()["stats"] for job in report.jobs}

    todoist = stats["todoist_tasks"]
    assert todoist["runs"] == 2 and todoist["records"] == 7 and todoist["api_calls"] == 7
    assert todoist["bytes"] == sum(len(json.dumps({"id": i})) + 1 for i in [0, 1, 2, 0, 1, 2, 3])
    assert todoist["cpu_s"] == 1.25  # only one manifest recorded it
    assert stats["strava_activities"]["cpu_s"] is None  # not in the manifests yet
    assert stats["spotify_playlists"]["runs"] == 0


@pytest.mark.integration  # ela status reads the broker too
def test_status_command_reads_the_bucket_url(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELA_ENV", "dev")
    monkeypatch.delenv("ELA_CONFIG", raising=False)
    seed_runs(bucket)
    at = NOW.strftime("%Y-%m-%d %H:%M:%S")
    environ = {"ELA_BUCKET_URL": bucket.url}

    table = invoke("status", "--env", "dev", "--now", at, env=environ)
    assert table.exit_code == 0, table.output
    lines = {line.split()[1] if line.startswith("!") else line.split()[0]: line
             for line in table.output.splitlines()[2:] if line.strip()}  # fmt: skip
    assert lines["garmin_activities"].startswith("!")
    assert "stale: 2 ticks missed" in lines["garmin_activities"]
    assert "late: 1 tick missed" in lines["strava_activities"]
    assert "fresh" in lines["todoist_tasks"]
    assert "missed two ticks or more: garmin_activities" in table.output

    result = invoke("status", "--json", "--stats", "--window", "1d", "--now", at, env=environ)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["bucket"] == bucket.url and data["env"] == "dev"
    jobs = {job["job"]: job for job in data["jobs"]}
    assert jobs["garmin_activities"]["freshness"]["stale"] is True
    assert jobs["todoist_tasks"]["stats"]["cpu_s"] == 1.25
    assert set(jobs["todoist_tasks"]["stats"]) == {
        "runs", "failures", "records", "api_calls", "bytes", "duration_s", "cpu_s", "gaps",
    }  # fmt: skip

    # On an 80-column terminal every line fits (wrapped, not cut), the totals in a table of
    # their own; on a colour terminal a stale job is red and a late one yellow.
    narrow = {**environ, "COLUMNS": "80"}
    fitted = invoke("status", "--stats", "--window", "1d", "--now", at, env=narrow)
    assert fitted.exit_code == 0, fitted.output
    assert max(len(line) for line in fitted.output.splitlines()) <= 80, fitted.output
    assert "totals of the runs scheduled since" in fitted.output
    coloured = CliRunner().invoke(main, ["status", "--now", at], env=environ, color=True)
    [stale_line] = [line for line in coloured.output.splitlines() if "stale: 2 ticks" in line]
    assert "garmin_activities" in stale_line and stale_line.startswith("\x1b[31m")  # red
    [late_line] = [line for line in coloured.output.splitlines() if "late: 1 tick" in line]
    assert "strava_activities" in late_line and late_line.startswith("\x1b[33m")  # yellow


@pytest.mark.integration  # ela status reads the broker too
def test_status_bad_inputs_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELA_ENV", "dev")
    environ = {"ELA_BUCKET_URL": (tmp_path / "b").as_uri()}
    assert_one_line_error(invoke("status", "--stats", "--window", "7x", env=environ), "7x")
    assert_one_line_error(
        invoke("status", env={"ELA_BUCKET_URL": "s3://nope"}),
        "expected gs://BUCKET or file:///FOLDER",
    )
    empty = invoke("status", env=environ)  # an empty bucket is not an error: nothing ran yet
    assert empty.exit_code == 0 and "never succeeded" in empty.output


def test_parse_window() -> None:
    assert status.parse_window("7d") == timedelta(days=7)
    assert status.parse_window("12h") == timedelta(hours=12)
    assert status.parse_window("2w") == timedelta(weeks=2)
    with pytest.raises(ValueError, match="unit m, h, d or w"):
        status.parse_window("0d")


# -- diff ---------------------------------------------------------------------------------------


def test_diff_side_by_side_plain_and_json() -> None:
    plain = invoke("diff", "dev", "prd")
    assert plain.exit_code == 1, plain.output  # as diff(1): 1 when the two differ
    assert "\x1b[" not in plain.output  # not a terminal: markers, no colour
    lines = plain.output.splitlines()
    assert any(line.startswith("* retry_attempts") and "2" in line for line in lines)
    assert any(line.startswith("  timezone") for line in lines)  # equal rows are unmarked
    assert any(
        line.startswith("* spotify_recently_played") and "0 */3 * * *" in line for line in lines
    )
    assert any(line.startswith("* frequent_jobs") and line.rstrip().endswith("-") for line in lines)

    coloured = invoke("diff", "dev", "prd", "--color")
    assert "\x1b[" in coloured.output

    as_json = invoke("diff", "--json")
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    schedules = {row["key"]: row for row in data["sections"]["schedules"]}
    assert schedules["garmin_sleep"] == {
        "key": "garmin_sleep", "left": "0 13 * * *", "right": "0 8 * * *", "differs": True,
    }  # fmt: skip
    groups = {row["key"]: row for row in data["sections"]["groups"]}
    assert groups["weekly_jobs"]["left"] is None and groups["weekly_jobs"]["differs"]
    params = {row["key"]: row for row in data["sections"]["parameters"]}
    assert params["garmin_heart_rate"]["differs"] is False
    assert data["differences"] == sum(
        row["differs"] for rows in data["sections"].values() for row in rows
    )


def test_diff_fits_an_80_column_terminal() -> None:
    result = CliRunner().invoke(main, ["diff", "dev", "prd"], env={"COLUMNS": "80"})
    assert result.exit_code == 1
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    # Long group lists wrap onto lines of their own, under their column.
    [spotify_all] = [line for line in result.output.splitlines() if "spotify_all" in line]
    assert spotify_all.split()[1] == "spotify_recently_played,"


def test_diff_of_a_file_with_itself_and_bad_inputs(tmp_path: Path) -> None:
    dev = str(REPO / "ingestion-config-dev.yaml")
    same = invoke("diff", dev, dev)
    assert same.exit_code == 0 and "0 differences" in same.output
    assert_one_line_error(invoke("diff", "dev", str(tmp_path / "nope.yaml")), "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("global: [\n")
    assert_one_line_error(invoke("diff", "dev", str(broken)), "broken.yaml:", "not valid YAML")


# -- promote ------------------------------------------------------------------------------------


@pytest.fixture
def env_files(tmp_path: Path) -> tuple[Path, Path]:
    dev, prd = tmp_path / "ingestion-config-dev.yaml", tmp_path / "ingestion-config-prd.yaml"
    shutil.copy(REPO / "ingestion-config-dev.yaml", dev)
    text = (REPO / "ingestion-config-prd.yaml").read_text()
    # A comment of the user's own, inside the job being promoted and after the last job.
    text = text.replace(
        "    data_type: top_tracks\n",
        "    data_type: top_tracks\n    # prd: reviewed with finance, keep monthly\n",
    ).replace(
        "    dependencies: [TODOIST_API_TOKEN]\n\nservices:",
        "    dependencies: [TODOIST_API_TOKEN]  # the last job\n\n# The catalogue.\nservices:",
    )
    prd.write_text(text)
    config_module.load(prd)
    return dev, prd


def job_order(path: Path) -> list[str]:
    return list(yaml.safe_load(path.read_text())["jobs"])


def test_promote_keeps_comments_order_and_target_schedule(env_files: tuple[Path, Path]) -> None:
    dev, prd = env_files
    before = prd.read_text()
    order = job_order(prd)

    result = invoke("promote", "spotify_top_tracks", "--from", str(dev), "--to", str(prd))
    assert result.exit_code == 0, result.output
    assert "-    limit: 50\n+    limit: 25\n" in result.output  # the unified diff
    after = prd.read_text()
    assert "    # prd: reviewed with finance, keep monthly\n" in after
    assert "  # the last job\n\n# The catalogue.\nservices:" in after
    promoted = config_module.load(prd)  # still valid
    assert promoted.jobs["spotify_top_tracks"].schedule == "0 9 1 * *"  # the target's
    assert promoted.jobs["spotify_top_tracks"].limit == 25
    assert job_order(prd) == order
    changed = [
        line for line in after.splitlines() if line not in before.splitlines()
    ]  # only the promoted value changed
    assert changed == ["    limit: 25"]

    again = invoke("promote", "spotify_top_tracks", "--from", str(dev), "--to", str(prd))
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_promote_with_schedule_and_dry_run(env_files: tuple[Path, Path]) -> None:
    dev, prd = env_files
    before = prd.read_text()
    dry = invoke(
        "promote", "garmin_sleep", "--from", str(dev), "--to", str(prd),
        "--cron", "30 5 * * *", "--dry-run",
    )  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert '+    cron: "30 5 * * *"\n' in dry.output
    assert prd.read_text() == before

    done = invoke(
        "promote", "garmin_sleep", "--from", str(dev), "--to", str(prd), "--schedule", "30 5 * * *"
    )
    assert done.exit_code == 0, done.output
    job = config_module.load(prd).jobs["garmin_sleep"]
    assert (job.schedule, job.days) == ("30 5 * * *", 1)
    assert "# Daily 08:00" not in prd.read_text()  # the old schedule's comment went with it


def test_promote_appends_a_new_job_at_the_end_of_jobs(env_files: tuple[Path, Path]) -> None:
    dev, prd = env_files
    dev.write_text(
        dev.read_text().replace(
            "\nservices:",
            "  spotify_top_tracks_short:\n"
            "    description: Top tracks, last 4 weeks\n"
            "    service: spotify\n"
            "    data_type: top_tracks\n"
            '    schedule: "0 17 * * 1"  # Weekly Monday 17:00\n'
            "    limit: 10\n"
            "    time_range: short_term\n"
            "\nservices:",
        )
    )
    result = promote.promote("spotify_top_tracks_short", dev, prd)
    assert result.added and result.notes and "--cron" in result.notes[0]
    promote.write(result)
    text = prd.read_text()
    # Written anew, the job says cron (the one key), whatever its source said.
    [line] = [line for line in text.splitlines() if line.startswith('    cron: "0 17 * * 1"')]
    assert line.endswith("# Weekly Monday 17:00") and "schedule" not in text
    assert job_order(prd)[-1] == "spotify_top_tracks_short"
    assert "  # the last job\n  spotify_top_tracks_short:\n" in text
    assert "    time_range: short_term\n\n# The catalogue.\nservices:" in text
    assert config_module.load(prd).jobs["spotify_top_tracks_short"].schedule == "0 17 * * 1"


def test_promote_bad_inputs_are_one_line(env_files: tuple[Path, Path]) -> None:
    dev, prd = env_files
    before = prd.read_text()
    common = ["--from", str(dev), "--to", str(prd)]
    assert_one_line_error(invoke("promote", "nope", *common), "'nope' is not a job")
    assert_one_line_error(
        invoke("promote", "garmin_sleep", *common, "--schedule", "61 * * * *"), "minute: 61"
    )
    assert_one_line_error(
        invoke("promote", "garmin_sleep", "--from", str(dev), "--to", "missing.yaml"),
        "missing.yaml",
    )
    assert_one_line_error(
        invoke("promote", "garmin_sleep", *common, "--schedule", "0 1 * * *", "--keep-schedule"),
        "pick one",
    )
    # A dev job named like a prd group: the result would not validate, so nothing is written.
    dev.write_text(
        dev.read_text().replace(
            "\nservices:",
            "  weekly_jobs:\n    service: todoist\n    data_type: tasks\n"
            '    cron: "0 1 * * 1"\n\nservices:',
        )
    )
    assert_one_line_error(
        invoke("promote", "weekly_jobs", *common), "ingestion-config-prd.yaml:", "share its name"
    )
    assert prd.read_text() == before
