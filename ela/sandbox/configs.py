"""The shipped configs, and variants of them written for one run (a test, a benchmark section,
the compose smoke)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ela import config as config_module
from ela.sandbox.processes import REPO


def shipped_config(env: str) -> dict[str, Any]:
    """``ingestion-config-{env}.yaml`` as plain data, to change before writing it elsewhere."""
    data: dict[str, Any] = yaml.safe_load((REPO / f"ingestion-config-{env}.yaml").read_text())
    return data


def write_config(path: Path, env: str = "dev", **changes: Any) -> Path:
    """The shipped config of ``env`` with top-level sections replaced or global keys changed.

    ``jobs=`` / ``job_groups=`` / ``services=`` replace those sections; ``schedules={job:
    cron}`` changes crons; any other keyword sets a ``global`` key.
    """
    data = shipped_config(env)
    for job, cron in changes.pop("schedules", {}).items():
        data["jobs"][job]["cron"] = cron
    for section in ("jobs", "job_groups", "services"):
        if section in changes:
            data[section] = changes.pop(section)
    data["global"].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config_module.load(path)  # a written config must itself be valid
    return path
