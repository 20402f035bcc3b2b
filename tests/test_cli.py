"""The `ela` command's small promises: wording, exit codes, hints (in-process, no services)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from ela.cli import main
from ela.sandbox.configs import write_config
from ela.sandbox.processes import REPO
from ela.text import plural


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_counts_are_plural_only_when_they_should_be() -> None:
    assert plural(1, "record") == "1 record"
    assert plural(0, "record") == "0 records"
    assert plural(1500, "error object") == "1,500 error objects"


def test_a_misspelt_target_gets_a_suggestion() -> None:
    result = invoke("run", "spotify_recent_played", "--inline", env={"ELA_ENV": "dev"})
    assert result.exit_code == 1
    assert "did you mean spotify_recently_played?" in result.output
    result = invoke("run", "daily_job", "--inline", env={"ELA_ENV": "dev"})
    assert "did you mean daily_jobs?" in result.output


def test_a_group_run_says_which_disabled_jobs_it_skips(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "ingestion-config-dev.yaml").read_text())
    jobs = data["jobs"]
    for name in ("todoist_projects", "garmin_sleep", "spotify_saved_tracks"):
        jobs[name]["enabled"] = False
    config = write_config(tmp_path / "ingestion-config-dev.yaml", jobs=jobs)
    result = invoke("run", "daily_jobs", "--inline", env={"ELA_CONFIG": str(config)})
    assert result.exit_code == 1
    assert "skipping spotify_saved_tracks, garmin_sleep, todoist_projects: disabled" in (
        result.output
    )
    assert "every job of daily_jobs is disabled" in result.output


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("", "FLOWER_BASIC_AUTH is not set"),
        ("admin", "FLOWER_BASIC_AUTH='admin' has no password"),
        ("admin:", "FLOWER_BASIC_AUTH='admin' has no password"),
    ],
)
def test_flower_says_what_is_wrong_with_its_credentials(value: str, said: str) -> None:
    result = invoke("flower", env={"FLOWER_BASIC_AUTH": value})
    assert result.exit_code == 1
    assert result.output.startswith(f"ela: {said}: Flower can send tasks")


@pytest.mark.parametrize("command", ["worker", "beat", "flower", "run", "status", "backfill"])
def test_help_is_plain_text(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "``" not in result.output and ":func:" not in result.output


def test_env_example_does_not_claim_that_ela_reads_it() -> None:
    text = (REPO / ".env.example").read_text()
    assert "`ela` itself does not read this file" in text
