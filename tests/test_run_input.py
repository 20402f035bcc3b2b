"""The one schema of a run's inputs (ela/run_input.py), field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ela import config as config_module
from ela.errors import InputError
from ela.run_input import RunInput, check, check_group, check_run_id
from ela.sandbox.processes import REPO

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
RUN_ID = "0b5c2a6e-8f0e-4d3c-9a1b-2c3d4e5f6a7b"


def refused(task: str, **kwargs: Any) -> str:
    with pytest.raises(InputError) as caught:
        check(CONFIG, task, kwargs)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def test_a_plain_call_runs_the_tasks_own_job() -> None:
    assert check(CONFIG, "tasks.todoist.projects", {}, RUN_ID) == RunInput(job="todoist_projects")


def test_overrides_are_parsed_into_their_types() -> None:
    run = check(
        CONFIG,
        "tasks.strava.activities",
        {"limit": 5, "since": "2025-03-01", "until": "2025-03-02T12:00:00+02:00", "dry_run": True},
    )
    assert run.limit == 5 and run.dry_run
    assert run.since == datetime(2025, 3, 1, tzinfo=UTC)
    assert run.until == datetime(2025, 3, 2, 10, tzinfo=UTC)
    assert check(CONFIG, "tasks.strava.activities", run.kwargs()) == run


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"limit": "abc"}, "limit: expected a whole number, got 'abc'"),
        ({"limit": -1}, "limit: expected a whole number of at least 1, got -1"),
        ({"limit": 1.5}, "limit: expected a whole number, got 1.5"),
        ({"limit": True}, "limit: expected a whole number, got True"),
        ({"dry_run": "false"}, "dry_run: expected true or false, got 'false'"),
        ({"limt": 10}, "limt: not an argument of this task; did you mean limit?"),
        ({"since": "yesterday"}, "since: 'yesterday' is not an ISO 8601 date or time"),
        ({"scheduled_at": "garbage"}, "scheduled_at: 'garbage' is not an ISO 8601"),
        (
            {"since": "2025-03-02", "until": "2025-03-01"},
            "since: 2025-03-02T00:00:00+00:00 is after",
        ),
        ({"job": "todoist_tasks"}, "job: todoist_tasks runs tasks.todoist.tasks, not tasks.strava"),
        ({"job": "strava_activites"}, "is not a job of"),
    ],
)
def test_a_bad_argument_is_refused_naming_its_field(kwargs: dict[str, Any], expected: str) -> None:
    message = refused("tasks.strava.activities", **kwargs)
    assert message.startswith("tasks.strava.activities: ")
    assert expected in message


def test_a_misspelt_job_gets_a_suggestion() -> None:
    assert refused("tasks.strava.activities", job="strava_activites").endswith(
        "did you mean strava_activities?"
    )


def test_overrides_that_do_not_apply_are_refused_not_ignored() -> None:
    assert "limit: does not apply to todoist_tasks" in refused("tasks.todoist.tasks", limit=10)
    assert "since: does not apply to spotify_saved_tracks" in refused(
        "tasks.spotify.saved_tracks", since="2025-01-01"
    )
    assert "above what the API returns" in refused("tasks.spotify.recently_played", limit=51)


@pytest.mark.parametrize(
    "run_id",
    [
        "../../../spotify/_runs/spotify_recently_played/x",
        "0b5c2a6e",
        "0B5C2A6E-8F0E-4D3C-9A1B-2C3D4E5F6A7B",
        f"{RUN_ID}\n",
        "a" * 5000,
        "nul\x00" + RUN_ID,
        None,
        42,
    ],
)
def test_run_ids_are_uuids_and_nothing_else(run_id: Any) -> None:
    with pytest.raises(InputError, match="is not a UUID"):
        check_run_id(run_id)
    assert check_run_id(RUN_ID) == RUN_ID


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(InputError, match="is not an ingest task"):
        check(CONFIG, "tasks.spotify.nope", {})


def test_a_group_needs_a_group_and_leaves_out_disabled_jobs() -> None:
    with pytest.raises(InputError, match=r"tasks\.run_group: group: required"):
        check_group(CONFIG, {})
    with pytest.raises(InputError, match="did you mean daily_jobs"):
        check_group(CONFIG, {"group": "daily_job"})
    runs = check_group(CONFIG, {"group": "daily_jobs", "dry_run": True})
    assert [r.job for r in runs] == CONFIG.job_groups["daily_jobs"].jobs
    assert all(r.dry_run for r in runs)
    with pytest.raises(InputError, match="limit: does not apply to garmin_sleep"):
        check_group(CONFIG, {"group": "daily_jobs", "limit": 5})
    disabled = CONFIG.model_copy(
        update={
            "jobs": {
                **CONFIG.jobs,
                "garmin_sleep": CONFIG.jobs["garmin_sleep"].model_copy(update={"enabled": False}),
            }
        }
    )
    assert "garmin_sleep" not in [r.job for r in check_group(disabled, {"group": "daily_jobs"})]
