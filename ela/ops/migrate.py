"""The origin's single legacy ``ingestion-config.yaml`` → ``ingestion-config-{dev,prd}.yaml``.

The legacy file (docs/configuration.md, "The legacy single file") served both environments
of the origin's first workflow: the env files' job shape (``cron``, ``command``,
``dependencies``, ...) and, in ``global``, both buckets (``gcs_bucket_dev``,
``gcs_bucket_prd``). The origin split it by hand into its two env files; this makes the same
split and keeps everything the file says:

- each env file is the legacy text edited in place, through a YAML round trip that keeps its
  comments, quoting and flow lists: ``global.gcs_bucket`` becomes that env's bucket and
  ``global.environment`` is added. Every job, group and service, every ``command`` line (the
  loader reads its parameters) and the timezone the origin read the crons in stay as written;
  ``error_retention_days`` stays absent, so each file gets its env's default (7 / 14 days);
- a job the legacy file gave an ``environment`` of one env is written into the other env's file
  too, disabled (``enabled: false``): nothing is dropped, and nothing starts running where it
  did not run;
- a setting the file holds once for both envs (``timeout_minutes: 30``) is kept in both, with
  a note, since the origin gave the two envs different values; one it lacks gets the origin's;
- what the new format refuses (a key it does not know, a job whose command is not one of the
  origin's fetchers) is left out, one note each, with the loader's own reason.

Notes read ``FILE:LINE: where: what``, lines of the legacy file, so a person can review the
result in one pass.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import YAMLError as RuamelYAMLError
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ela import config as config_module
from ela.config import ENVS
from ela.errors import ConfigError

# The origin's settings per environment, for the notes on values the legacy file shares.
SEED_GLOBALS: dict[str, dict[str, int]] = {
    "retry_attempts": {"dev": 2, "prd": 3},
    "max_parallel_jobs": {"dev": 3, "prd": 5},
    "timeout_minutes": {"dev": 15, "prd": 45},
}
_MAX_ROUNDS = 50  # each round leaves out at least one thing the loader refused


@dataclasses.dataclass
class Migration:
    """The two files' texts and their validated configs; notes on what needs a look."""

    source: Path
    texts: dict[str, str]
    configs: dict[str, config_module.IngestionConfig]
    notes: list[str]

    def paths(self, out_dir: Path) -> dict[str, Path]:
        return {env: out_dir / f"ingestion-config-{env}.yaml" for env in self.texts}


class _Notes:
    """Notes as ``FILE:LINE: where: message``, deduplicated, in file order."""

    def __init__(self, filename: str, legacy: Any) -> None:
        self.filename = filename
        self.legacy = legacy
        self.found: set[tuple[int, str]] = set()

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        where = ".".join(str(part) for part in loc)
        line = _line(self.legacy, loc)
        self.found.add((line, f"{self.filename}:{line}: {where}: {message}"))

    @property
    def items(self) -> list[str]:
        return [text for _, text in sorted(self.found)]


def _line(node: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest key of ``loc`` found in the round-tripped document."""
    line = 1
    for key in loc:
        found = _child_key(node, key)
        if found is None:
            break
        position = node.lc.key(found) if isinstance(node, CommentedMap) else node.lc.item(found)
        line = int(position[0]) + 1
        node = node[found]
    return line


def migrate(path: Path) -> Migration:
    """Read the legacy file at ``path`` and build both env files' texts; writes nothing.

    Raises:
        ConfigError: the file cannot be read, is not YAML or has no jobs; or a result does not
            validate for a reason this cannot leave out (reported with the result's lines).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}:1: cannot read the file: {exc.strerror}"]) from None
    legacy = _load(text, path)
    if not isinstance(legacy, dict) or not isinstance(legacy.get("jobs"), dict):
        raise ConfigError([f"{path}:1: not a legacy ingestion config: expected a jobs mapping"])
    if not legacy["jobs"]:
        raise ConfigError([f"{path}:1: not a legacy ingestion config: expected a jobs mapping"])
    notes = _Notes(str(path), legacy)
    texts: dict[str, str] = {}
    configs: dict[str, config_module.IngestionConfig] = {}
    for env in ENVS:
        doc = _load(text, path)  # a fresh copy per env: the edits differ
        _globals(doc, env, notes)
        _jobs(doc, env, notes)
        texts[env], configs[env] = _loadable(doc, env, path.name, notes)
    return Migration(path, texts, configs, notes.items)


def _load(text: str, path: Path) -> Any:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True  # the origin double-quotes its scalars; so do the results
    try:
        return yaml.load(text)
    except RuamelYAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{path}:{line}: not valid YAML: {reason}"]) from None


def _globals(doc: Any, env: str, notes: _Notes) -> None:
    """``gcs_bucket_{dev,prd}`` → this env's ``gcs_bucket``; add ``environment``."""
    glob = doc.get("global")
    if not isinstance(glob, CommentedMap):
        return
    keys = list(glob)
    position = next((keys.index(k) for k in config_module.LEGACY_BUCKET_KEYS if k in glob), 0)
    bucket = glob.get(f"gcs_bucket_{env}")
    for key in config_module.LEGACY_BUCKET_KEYS:
        glob.pop(key, None)
    if "gcs_bucket" not in glob:
        if not isinstance(bucket, str):
            bucket = f"ela-dp-{env}"
            notes.add(("global",), f"no gcs_bucket_{env}; wrote {bucket} for {env}")
        glob.insert(position, "gcs_bucket", DoubleQuotedScalarString(bucket))
    if "environment" not in glob:
        # First: a key added last would land after the comment that closes the section.
        glob.insert(0, "environment", DoubleQuotedScalarString(env))
    for key, seed in SEED_GLOBALS.items():
        if key not in glob:
            glob.insert(len(glob) - 1, key, seed[env])
            notes.add(("global",), f"no {key}; wrote the origin's {seed[env]} for {env}")
        else:
            notes.add(
                ("global", key),
                f"one value ({glob[key]}) for both environments; kept in both (the origin's are "
                f"{seed['dev']} dev / {seed['prd']} prd)",
            )


def _jobs(doc: Any, env: str, notes: _Notes) -> None:
    """A job restricted to the other environment comes along disabled."""
    for name, job in doc["jobs"].items():
        if not isinstance(job, dict) or "environment" not in job:
            continue
        declared = job["environment"]
        values = declared if isinstance(declared, list) else [declared]
        if env not in values and "both" not in values:
            job["enabled"] = False
            notes.add(
                ("jobs", name, "environment"),
                f"{declared!s} only: written into the {env} file disabled (enabled: false)",
            )
        job["environment"] = DoubleQuotedScalarString(env)


def _loadable(
    doc: Any, env: str, source: str, notes: _Notes
) -> tuple[str, config_module.IngestionConfig]:
    """The env file's text, once it loads: leave out, round by round, what the loader refuses."""
    name = f"ingestion-config-{env}.yaml"
    for _ in range(_MAX_ROUNDS):
        text = _render(doc, env, source)
        try:
            return text, config_module.loads(text, name, expect_env=env)
        except ConfigError as exc:
            if not any(_leave_out(doc, loc, message, notes) for loc, message in exc.found):
                raise
    raise ConfigError([f"{name}:1: the migration did not converge; please report this"])


def _leave_out(doc: Any, loc: tuple[Any, ...], message: str, notes: _Notes) -> bool:
    """Remove what ``loc`` names, if it can go without changing anything else; True if it did."""
    section = loc[0] if loc else None
    unknown = message.startswith("unknown key")
    if (section == "global" and unknown) or section == "services":
        # A service's problem is its own key, or one of its data types (loc ends in an index).
        target, key = _parent(doc, loc[:2] if section == "services" and len(loc) == 2 else loc)
        if target is None:
            return False
        notes.add(loc, f"{message}; left out")
        del target[key]
        return True
    if section == "jobs" and len(loc) >= 2 and loc[1] in doc["jobs"]:
        if unknown and len(loc) == 3:
            notes.add(loc, "no equivalent in the new format; left out")
            del doc["jobs"][loc[1]][loc[2]]
            return True
        notes.add(loc, f"{message}; the job is left out")
        del doc["jobs"][loc[1]]
        for group in (doc.get("job_groups") or {}).values():
            members = group.get("jobs") if isinstance(group, dict) else None
            while isinstance(members, list) and loc[1] in members:
                members.remove(loc[1])
        return True
    if section == "job_groups" and len(loc) >= 4 and loc[2] == "jobs":
        members = doc["job_groups"][loc[1]]["jobs"]
        notes.add(loc, f"{members[loc[3]]} is not a job of this file; left out of the group")
        del members[loc[3]]
        return True
    if section == "job_groups" and len(loc) == 3 and loc[2] == "jobs":  # emptied group
        notes.add(loc[:2], "no job left in the group; left out")
        del doc["job_groups"][loc[1]]
        return True
    return False


# The loader reports a key under the model's name; the legacy file may spell it the origin's way.
_SPELLINGS = {"data_types": ("data_types", "supported_data_types"), "cron": ("cron", "schedule")}


def _parent(doc: Any, loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """The container holding what ``loc`` names in ``doc``, and its key or index there."""
    node = doc
    for i, key in enumerate(loc):
        found = _child_key(node, key)
        if found is None:
            return None, None
        if i == len(loc) - 1:
            return node, found
        node = node[found]
    return None, None


def _child_key(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        return next((k for k in _SPELLINGS.get(key, (key,)) if k in node), None)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return key
    return None


def _render(doc: Any, env: str, source: str) -> str:
    out = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.width = 4096  # keep the origin's long flow lists on one line
    yaml.dump(doc, out)
    header = (
        f"# ELA Ingest — {env.upper()} environment, split from {source} by "
        "`ela config migrate`;\n# review the notes it printed. See docs/configuration.md.\n"
    )
    return header + out.getvalue()


def write(migration: Migration, out_dir: Path, *, force: bool = False) -> dict[str, Path]:
    """Write both files into ``out_dir`` (each in one rename).

    Raises:
        ValueError: a file exists and ``force`` is not set; ``out_dir`` is not a folder.
    """
    if not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir}: not a folder")
    paths = migration.paths(out_dir)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise ValueError(f"{', '.join(existing)} already exist; pass --force to overwrite")
    for env, target in paths.items():
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=out_dir, prefix=".migrate-", delete=False
        ) as out:
            out.write(migration.texts[env])
        os.chmod(out.name, 0o644)
        os.replace(out.name, target)
    return paths
