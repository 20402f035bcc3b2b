"""The ingestion config: YAML → typed model, with every problem reported as ``FILE:LINE: message``.

The file keeps the origin orchestrator's shape (``global``, ``job_groups``, ``jobs``,
``services``), and the origin's own files load unchanged: a job's ``cron``, its shell
``command`` (whose ``--limit``, ``--days``, ``--time-range``, ``--athlete`` are read as its
parameters, :mod:`ela.command`), its ``environment``, the services' ``supported_data_types``,
``base_path`` and ``fetch_script``, and no ``error_retention_days`` (the env's default). Our
own files state parameters as fields (``limit``, ``time_range``, ``days``). Validation is strict
(unknown keys are errors) and reports all problems at once, so a user fixes a file in one pass.
Things that load but should change (the old ``schedule`` key) are notices, not problems.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from ela import command as command_module
from ela import cron
from ela.connectors import SERVICES
from ela.connectors.base import PARAMS
from ela.connectors.strava import MAX_LOOKBACK_DAYS
from ela.errors import ConfigError

Env = Literal["dev", "prd"]
ENVS: tuple[Env, ...] = ("dev", "prd")
REPO_ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # fullmatch: `$` would let a trailing newline through
# Limits that keep validation quick and small whatever the bytes (a config is a few KiB with a
# few hundred values): a file is read only up to MAX_BYTES, aliases may expand it to MAX_VALUES
# values, nested MAX_DEPTH deep; beyond MAX_PROBLEMS problems the rest are counted, not listed.
MAX_BYTES = 256 << 10
MAX_VALUES = 100_000
MAX_DEPTH = 50
MAX_PROBLEMS = 100
# The one-line fallback for an exception validation did not expect (a bug): a user still gets
# FILE:LINE and no traceback; tests/test_config_fuzz.py fails if any input reaches it.
INTERNAL = "internal error while validating"
# The origin's files have no error_retention_days; its documented retention per environment.
ERROR_RETENTION_DAYS: dict[str, int] = {"dev": 7, "prd": 14}
# The origin's legacy single file named both buckets; an env file names one.
LEGACY_BUCKET_KEYS = ("gcs_bucket_dev", "gcs_bucket_prd")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GlobalSettings(_Strict):
    environment: Env
    timezone: str = "UTC"
    retry_attempts: int = Field(ge=0, le=10)
    max_parallel_jobs: int = Field(ge=1, le=64)
    gcs_bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
    timeout_minutes: int = Field(ge=1, le=24 * 60)
    error_retention_days: int = Field(ge=1, le=3650)
    # First retry waits up to this long (full jitter), doubling per attempt; not in the origin.
    retry_backoff_seconds: int = Field(default=30, ge=0, le=900)

    @model_validator(mode="before")
    @classmethod
    def _retention_of_the_env(cls, data: Any) -> Any:
        """No ``error_retention_days`` (as in the origin's files): the env's default."""
        if isinstance(data, dict) and "error_retention_days" not in data:
            env = str(data.get("environment"))
            return {**data, "error_retention_days": ERROR_RETENTION_DAYS.get(env, 7)}
        return data

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class JobGroup(_Strict):
    description: str = ""
    jobs: list[str] = Field(min_length=1)


class Job(_Strict):
    service: str
    data_type: str
    # The five-field cron, written ``cron:`` as in the origin's files (``schedule:`` still loads
    # with a notice; see :func:`loads`). The attribute keeps the name ``schedule``.
    schedule: str = Field(alias="cron")
    description: str = ""
    enabled: bool = True
    limit: int | None = Field(default=None, ge=1)
    time_range: Literal["short_term", "medium_term", "long_term"] | None = None
    days: int | None = Field(default=None, ge=1)
    # Completeness settings (docs/completeness.md); unset means the data type's default.
    lookback_days: int | None = Field(default=None, ge=1, le=MAX_LOOKBACK_DAYS)  # Strava
    settle_hours: int | None = Field(default=None, ge=0, le=72)  # Garmin: a day is final after
    user_timezone: str | None = None  # Garmin: the user's zone, instead of the profile's
    follow_up_plays: int | None = Field(default=None, ge=1, le=50)  # Spotify: when to look again
    # The origin's shell line; its flags become limit/time_range/days when the file loads.
    command: str | None = None
    # The origin repeated the file's environment on every job; it must agree with global's.
    environment: Env | None = None
    # The environment variables the job refuses to run without, as the origin's workflow did.
    dependencies: list[str] = []

    @property
    def task(self) -> str:
        return f"tasks.{self.service}.{self.data_type}"

    @property
    def cron(self) -> cron.Cron:
        return cron.parse(self.schedule)

    def params(self) -> dict[str, Any]:
        """The job's parameters that are set, as the connector receives them."""
        values = {param: getattr(self, param) for param in PARAMS}
        return {k: v for k, v in values.items() if v is not None}

    def missing_dependencies(self, environ: Mapping[str, str]) -> list[str]:
        """The job's ``dependencies`` that are unset or empty in ``environ``."""
        return [name for name in self.dependencies if not environ.get(name)]


class ServiceSettings(_Strict):
    # The origin's key is supported_data_types; both load (see _origin_forms).
    data_types: list[str] = []
    default_limit: int | None = Field(default=None, ge=1)
    # Where the origin's fetcher lived; kept so the origin's files load, not used.
    base_path: str | None = None
    fetch_script: str | None = None


class IngestionConfig(_Strict):
    global_: GlobalSettings = Field(alias="global")
    jobs: dict[str, Job] = Field(min_length=1)
    job_groups: dict[str, JobGroup] = {}
    services: dict[str, ServiceSettings] = {}
    path: str = Field(default="<memory>", exclude=True)
    # Set by loads(), never read from the file: ``FILE:LINE: message`` lines about things that
    # load but should change, and the line of every key by its path (("jobs", "x", "cron")).
    _notices: tuple[str, ...] = PrivateAttr(default=())
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)

    @property
    def notices(self) -> tuple[str, ...]:
        return self._notices

    def line_of(self, *path: Any) -> int:
        """The line of the deepest key of ``path`` in the file (1 if none is known)."""
        return _line_of(self._lines, path)

    @property
    def env(self) -> Env:
        return self.global_.environment

    def queue(self, service: str) -> str:
        return f"{self.env}.{service}"

    def enabled_jobs(self) -> dict[str, Job]:
        return {name: job for name, job in self.jobs.items() if job.enabled}

    def effective_limit(self, name: str) -> int | None:
        job = self.jobs[name]
        if job.limit is not None:
            return job.limit
        settings = self.services.get(job.service)
        return settings.default_limit if settings else None

    def resolve(self, target: str) -> list[str]:
        """A job name or a group name → the job names it stands for.

        Raises:
            KeyError: with a message listing what exists.
        """
        if target in self.jobs:
            return [target]
        if target in self.job_groups:
            return list(self.job_groups[target].jobs)
        close = difflib.get_close_matches(target, [*self.jobs, *self.job_groups], n=1)
        hint = f"did you mean {close[0]}?" if close else f"jobs: {', '.join(self.jobs)}"
        raise KeyError(
            f"{target!r} is neither a job nor a group of {self.path}; {hint}; "
            f"groups: {', '.join(self.job_groups) or 'none'}"
        )

    def job_for_task(self, task: str) -> str:
        """The job a bare task call (``celery call tasks.todoist.tasks``) runs.

        The job named ``{service}_{data_type}`` if there is one, else the only job of that task.
        """
        _, service, data_type = task.split(".")
        preferred = f"{service}_{data_type}"
        if preferred in self.jobs and self.jobs[preferred].task == task:
            return preferred
        matches = [name for name, job in self.jobs.items() if job.task == task]
        if len(matches) != 1:
            raise KeyError(
                f"{task} matches {len(matches)} jobs in {self.path} "
                f"({', '.join(matches) or 'none'}); pass job=NAME"
            )
        return matches[0]


# ---------------------------------------------------------------------------------------------
# Loading


def config_path(env: str | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The file for ``env``: ``ELA_CONFIG`` if set, else ``ingestion-config-{env}.yaml``.

    The shipped files are looked up in the working directory, then beside the package.
    """
    if environ.get("ELA_CONFIG"):
        return Path(environ["ELA_CONFIG"])
    env = env or environ.get("ELA_ENV") or "dev"
    if env not in ENVS:
        raise ConfigError([f"ELA_ENV: {env!r} is not an environment; use dev or prd"])
    name = f"ingestion-config-{env}.yaml"
    local = Path.cwd() / name
    return local if local.exists() else REPO_ROOT / name


def load(path: str | os.PathLike[str], expect_env: str | None = None) -> IngestionConfig:
    """Load and validate one config file.

    Raises:
        ConfigError: with every problem as a ``FILE:LINE: message`` line.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise ConfigError([f"{path}:1: not a regular file"])
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"{path}:1: cannot read the file: {reason}"]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(
            [f"{path}:1: the file is over {MAX_BYTES // 1024} KiB; a config is a few KiB"]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise ConfigError(
            [f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"]
        ) from None
    return loads(text, str(path), expect_env=expect_env)


def load_env(env: str | None = None, environ: Mapping[str, str] = os.environ) -> IngestionConfig:
    """The config of ``env`` (default ``ELA_ENV``, then dev), honouring ``ELA_CONFIG``."""
    wanted = env or environ.get("ELA_ENV") or "dev"
    config = load(config_path(env, environ))
    if config.env != wanted:
        raise ConfigError(
            [
                f"{config.path}:1: global.environment is {config.env!r} but the {wanted!r} "
                "environment was asked for (ELA_ENV / --env)"
            ]
        )
    return config


def loads(text: str, filename: str = "<string>", expect_env: str | None = None) -> IngestionConfig:
    """Validate YAML text; see :func:`load`."""
    try:
        return _loads(text, filename, expect_env)
    except ConfigError:
        raise
    except Exception as exc:  # a bug: still one line, no traceback (the fuzz test finds these)
        raise ConfigError(
            [f"{filename}:1: {INTERNAL} ({type(exc).__name__}: {str(exc)[:200]}); please report it"]
        ) from exc


def _loads(text: str, filename: str, expect_env: str | None) -> IngestionConfig:
    problems = _Problems(filename)
    data = _parse_yaml(text, problems)
    if data is None and problems.items:
        raise problems.error()
    if not isinstance(data, dict):
        problems.add((), "the file must be a mapping with global, jobs, job_groups and services")
        raise problems.error()
    from_command = _origin_forms(data, problems)

    model: IngestionConfig | None = None
    try:
        model = IngestionConfig.model_validate({**data, "path": filename})
        model._notices = tuple(problems.render(problems.notices))
        model._lines = problems.lines
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if not problems.covers(loc):  # e.g. a recursive alias, already said, read as None
                problems.add(loc, _pydantic_message(error))
    _check_semantics(data, filename, problems, expect_env, from_command)
    if problems.items or model is None:
        raise problems.error()
    return model


def _line_of(lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    """The line of the deepest key of ``loc`` that ``lines`` knows (1 if none)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


class _Problems:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[tuple[Any, ...], int] = {}
        self.items: dict[tuple[int, str], None] = {}  # ordered, and a set: 40,000 stay fast
        self.notices: dict[tuple[int, str], None] = {}
        self.locs: set[tuple[Any, ...]] = set()
        self.found: list[tuple[tuple[Any, ...], str]] = []

    def covers(self, loc: tuple[Any, ...]) -> bool:
        """A problem was already reported at ``loc`` or at a value containing it."""
        return any(loc[:end] in self.locs for end in range(len(loc) + 1))

    def line_of(self, loc: tuple[Any, ...]) -> int:
        return _line_of(self.lines, loc)

    def add(self, loc: tuple[Any, ...], message: str, line: int | None = None) -> None:
        self.locs.add(loc)
        self.found.append((loc, message))
        self._put(self.items, loc, message, line)

    def error(self) -> ConfigError:
        return ConfigError(self.render(), self.found)

    def notice(self, loc: tuple[Any, ...], message: str) -> None:
        """Something that loads but should change; never fails the file."""
        self._put(self.notices, loc, message, None)

    def _put(
        self,
        into: dict[tuple[int, str], None],
        loc: tuple[Any, ...],
        message: str,
        line: int | None,
    ) -> None:
        where = ".".join(_printable(part) for part in loc)
        text = f"{where}: {message}" if where else message
        into[(line if line is not None else self.line_of(loc), text)] = None

    def render(self, items: dict[tuple[int, str], None] | None = None) -> list[str]:
        chosen = sorted(self.items if items is None else items)
        lines = [f"{self.filename}:{line}: {text}" for line, text in chosen]
        if len(lines) > MAX_PROBLEMS:
            more = len(lines) - MAX_PROBLEMS
            lines = [
                *lines[:MAX_PROBLEMS],
                f"{self.filename}:{chosen[MAX_PROBLEMS][0]}: and {more:,} more problems; "
                "fix these first",
            ]
        return lines


def _printable(part: Any) -> str:
    """A key as it goes into a one-line message: quoted if it holds anything unprintable."""
    text = str(part)
    return text if text.isprintable() and len(text) <= 80 else repr(text[:80])


# LibYAML's parser when PyYAML was built with it: four times as fast on a large file.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TooLarge(Exception):
    """The document expands past MAX_VALUES values (an alias bomb)."""


def _parse_yaml(text: str, problems: _Problems) -> Any:
    """YAML → Python, noting the line of every key in ``problems`` and rejecting duplicates.

    Aliases are expanded here, once per use, up to :data:`MAX_VALUES` values in all; an alias
    inside the value it names (recursion) and nesting beyond :data:`MAX_DEPTH` are problems.
    Merge keys (``<<: *defaults``) merge, as YAML 1.1 says.
    """
    lines = problems.lines  # filled as keys are read: problems found meanwhile get their line
    if not text.strip():
        problems.add((), "the file is empty; expected global, jobs, job_groups and services")
        return None
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters such as NUL
        problems.add((), f"not valid YAML: {_yaml_reason(exc)}", line=_yaml_line(exc, text))
        return None
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        problems.add((), f"not valid YAML: {_yaml_reason(exc)}", line=_yaml_line(exc, text))
        return None
    except RecursionError:
        problems.add((), f"nested more than {MAX_DEPTH} levels deep; a config is a few levels")
        return None
    finally:
        loader.dispose()
    if node is None:
        problems.add((), "the file is empty; expected global, jobs, job_groups and services")
        return None
    values = 0
    # The nodes being built, and where: meeting one again is an alias inside what it names.
    active: dict[int, tuple[Any, ...]] = {}

    def build(node: yaml.Node, path: tuple[Any, ...]) -> Any:
        nonlocal values
        values += 1
        if values > MAX_VALUES:
            raise _TooLarge
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in active:
            problems.add(active[id(node)], "an alias inside this value refers to it (recursive)")
            return None
        if len(path) > MAX_DEPTH:
            problems.add(path[:MAX_DEPTH], f"nested more than {MAX_DEPTH} levels deep")
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                return loader.construct_object(node, deep=True)
            except Exception as exc:  # `!!int abc`, `!!bool maybe`, unknown tags
                problems.add(path, f"cannot read value: {_yaml_reason(exc)}")
                return None
        active[id(node)] = path
        try:
            if isinstance(node, yaml.MappingNode):
                return build_mapping(node, path)
            return [build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            del active[id(node)]

    def build_mapping(node: yaml.MappingNode, path: tuple[Any, ...]) -> dict[str, Any]:
        try:
            loader.flatten_mapping(node)  # merge keys, in place
        except yaml.YAMLError as exc:
            problems.add(path, f"cannot merge: {_yaml_reason(exc)}")
        except RecursionError:
            problems.add(path, "an alias inside this value refers to it (recursive)")
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.add(path, "keys must be plain names, not lists or mappings", key_line)
                continue
            try:
                key = loader.construct_object(key_node)
            except Exception as exc:
                problems.add(path, f"cannot read key: {_yaml_reason(exc)}", key_line)
                continue
            key = key if isinstance(key, str) else str(key)
            child = (*path, key)
            if key in result:
                problems.add(
                    child,
                    f"duplicate key (first defined on line {lines[child]}); "
                    "YAML would silently keep only the last one",
                    line=key_line,
                )
                continue
            lines[child] = key_line
            result[key] = build(value_node, child)
        return result

    try:
        return build(node, ())
    except _TooLarge:
        problems.add(
            (),
            f"the file expands to more than {MAX_VALUES:,} values through its aliases "
            "(&anchor / *alias); write the values out",
            line=1,
        )
        return None


def _yaml_reason(exc: BaseException) -> str:
    """What went wrong, in one short line, without the library's multi-line context."""
    reason = getattr(exc, "problem", None) or str(exc)
    return " ".join(str(reason).split())[:200]


def _yaml_line(exc: BaseException, text: str) -> int:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(exc, "position", None)  # a ReaderError has the offending character's
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def _pydantic_message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return "unknown key; check its spelling against docs/configuration.md"
    if kind == "missing":
        return "required key is missing"
    if kind in ("int_type", "bool_type", "string_type", "list_type", "dict_type"):
        wanted = {
            "int_type": "an integer",
            "bool_type": "true or false",
            "string_type": "a string",
            "list_type": "a list",
            "dict_type": "a mapping",
        }[kind]
        return f"expected {wanted}, got {_shown(value)}"
    return f"{error['msg']} (got {_shown(value)})" if value is not None else str(error["msg"])


def _shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A section for the semantic checks; a section of the wrong type is already reported."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _origin_forms(data: dict[str, Any], problems: _Problems) -> dict[str, dict[str, str]]:
    """Bring the origin's spellings to the model's, in place.

    ``schedule`` becomes ``cron`` (with a notice: ``cron`` is the one key, as in the origin's
    files), ``supported_data_types`` becomes ``data_types``, and a job's ``command`` sets the
    parameters its flags name.

    Returns:
        For each job with a command, the parameters it set and their flags as written.
    """
    glob = _mapping(data, "global")
    for key in [k for k in glob if k in LEGACY_BUCKET_KEYS]:
        problems.add(
            ("global", key),
            "a key of the origin's legacy single file; `ela config migrate "
            f"{problems.filename}` turns that file into the two env files",
        )
        del glob[key]
    for name, spec in _mapping(data, "services").items():
        if isinstance(spec, dict):
            _rename(spec, ("services", name), "supported_data_types", "data_types", problems)
    from_command: dict[str, dict[str, str]] = {}
    for name, job in _mapping(data, "jobs").items():
        if not isinstance(job, dict):
            continue
        if _rename(job, ("jobs", name), "schedule", "cron", problems):
            problems.notice(
                ("jobs", name, "schedule"),
                "the key is now cron, as in the origin's files; rename it (schedule still loads)",
            )
        if isinstance(job.get("command"), str):
            from_command[name] = _command_params(name, job, problems)
    return from_command


def _rename(
    mapping: dict[str, Any], loc: tuple[Any, ...], old: str, new: str, problems: _Problems
) -> bool:
    """Move ``old`` to ``new`` (keeping its line for messages); True if it was moved."""
    if old not in mapping:
        return False
    if new in mapping:
        problems.add((*loc, old), f"both {old} and {new} are set; keep only {new}")
        return False
    mapping[new] = mapping.pop(old)
    problems.lines[(*loc, new)] = problems.line_of((*loc, old))
    return True


def _command_params(name: str, job: dict[str, Any], problems: _Problems) -> dict[str, str]:
    """Check the origin ``command`` against the job and set the parameters it passes."""
    loc = ("jobs", name, "command")
    try:
        parsed = command_module.parse(job["command"])
    except command_module.CommandError as exc:
        problems.add(loc, str(exc))
        return {}
    service, data_type = job.get("service"), job.get("data_type")
    if parsed.service != service:
        problems.add(loc, f"runs the {parsed.service} fetcher but the job's service is {service!r}")
    elif parsed.data_type is None:
        problems.add(loc, f"names no data type; the origin's lines name it, e.g. {data_type}")
    elif parsed.data_type != data_type:
        problems.add(loc, f"fetches {parsed.data_type} but the job's data_type is {data_type!r}")
    for param, value in parsed.params.items():
        if job.get(param) is not None and job[param] != value:
            problems.add(
                loc, f"{parsed.flags[param]} disagrees with {param}: {job[param]}; keep one of them"
            )
            continue
        job[param] = value
        problems.lines.setdefault(("jobs", name, param), problems.line_of(loc))
    return parsed.flags


def _check_semantics(
    data: dict[str, Any],
    filename: str,
    problems: _Problems,
    expect_env: str | None,
    from_command: Mapping[str, Mapping[str, str]],
) -> None:
    """Checks beyond types: crons, the connector catalogue, groups and the environment."""
    glob = _mapping(data, "global")
    env = glob.get("environment")
    file_env = re.search(r"ingestion-config-(dev|prd)\.ya?ml$", filename)
    if expect_env and env in ENVS and env != expect_env:
        problems.add(("global", "environment"), f"is {env!r}; expected {expect_env!r}")
    elif file_env and env in ENVS and env != file_env.group(1):
        problems.add(
            ("global", "environment"),
            f"is {env!r} but the file is named for {file_env.group(1)!r}",
        )
    bucket = glob.get("gcs_bucket")
    if isinstance(bucket, str) and env in ENVS:
        other = "prd" if env == "dev" else "dev"
        if other in re.split(r"[-_.]", bucket):
            problems.add(
                ("global", "gcs_bucket"),
                f"{bucket!r} is the {other} bucket but this is the {env} config; use ela-dp-{env}",
            )
    timezone = glob.get("timezone", "UTC")
    if isinstance(timezone, str):
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, "Europe"
            problems.add(
                ("global", "timezone"), f"{timezone!r} is not an IANA time zone (e.g. UTC)"
            )

    for name, settings in _mapping(data, "services").items():
        if name not in SERVICES:
            problems.add(("services", name), f"unknown service; known: {', '.join(SERVICES)}")
        elif isinstance(settings, dict) and isinstance(settings.get("data_types"), list):
            for i, dt in enumerate(settings["data_types"]):
                if dt not in SERVICES[name].data_types:
                    known = ", ".join(SERVICES[name].data_types)
                    problems.add(
                        ("services", name, "data_types", i),
                        f"{dt!r} is not a {name} data type; known: {known}",
                    )

    jobs = _mapping(data, "jobs")
    for name, job in jobs.items():
        _check_job(name, job, problems, from_command.get(name, {}))
        declared = job.get("environment") if isinstance(job, dict) else None
        if declared in ENVS and env in ENVS and declared != env:
            problems.add(
                ("jobs", name, "environment"),
                f"is {declared!r} but global.environment is {env!r}; a file serves one environment",
            )

    for group, spec in _mapping(data, "job_groups").items():
        if group in jobs:
            problems.add(("job_groups", group), "a group may not share its name with a job")
        members = spec.get("jobs") if isinstance(spec, dict) else None
        if not isinstance(members, list):
            continue
        seen: set[str] = set()
        for i, member in enumerate(members):
            if not isinstance(member, str):
                continue  # the model reports it: expected a string
            if member not in jobs:
                problems.add(
                    ("job_groups", group, "jobs", i),
                    f"names job {member!r}, which is not defined under jobs",
                )
            if member in seen:
                problems.add(("job_groups", group, "jobs", i), f"lists {member!r} twice")
            seen.add(member)


def _check_job(name: str, job: Any, problems: _Problems, flags: Mapping[str, str]) -> None:
    """One job's cron and parameters; a parameter its ``command`` set is reported there."""
    loc: tuple[Any, ...] = ("jobs", name)
    if not _NAME.fullmatch(str(name)):
        problems.add(loc, "job names are lower_snake_case (letters, digits, underscores)")
    if not isinstance(job, dict):
        return
    expression = job.get("cron")
    if isinstance(expression, str):
        try:
            cron.parse(expression)
        except cron.CronError as exc:
            problems.add((*loc, "cron"), f"bad cron: {exc}")
    service, data_type = job.get("service"), job.get("data_type")
    if not isinstance(service, str) or not isinstance(data_type, str):
        return
    if service not in SERVICES:
        known = ", ".join(SERVICES)
        problems.add((*loc, "service"), f"unknown service {service!r}; known: {known}")
        return
    types = SERVICES[service].data_types
    if data_type not in types:
        problems.add(
            (*loc, "data_type"),
            f"{data_type!r} is not a {service} data type; known: {', '.join(types)}",
        )
        return
    spec = types[data_type]

    def report(param: str, message: str) -> None:
        if param in flags:
            problems.add((*loc, "command"), f"{flags[param]}: {message}")
        else:
            problems.add((*loc, param), message)

    for param in PARAMS:
        if job.get(param) is not None and param not in spec.params:
            allowed = ", ".join(sorted(spec.params)) or "none"
            report(param, f"does not apply to {service}/{data_type} (its parameters: {allowed})")
    limit = job.get("limit")
    if isinstance(limit, int) and spec.max_limit is not None and limit > spec.max_limit:
        report(
            "limit",
            f"{limit} is above what the {service} API returns for {data_type} "
            f"({spec.max_limit}); lower it",
        )
    days = job.get("days")
    if isinstance(days, int) and spec.max_days is not None and days > spec.max_days:
        report("days", f"{days} is above the maximum of {spec.max_days} per run")
    zone = job.get("user_timezone")
    if isinstance(zone, str):
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.add((*loc, "user_timezone"), f"{zone!r} is not an IANA time zone")


def unset_dependencies(config: IngestionConfig, environ: Mapping[str, str]) -> list[str]:
    """``FILE:LINE: jobs.NAME.dependencies: A, B not set`` for each enabled job missing some.

    The line is the job's ``dependencies`` key.
    """
    found = []
    for name, job in config.enabled_jobs().items():
        missing = job.missing_dependencies(environ)
        if missing:
            line = config.line_of("jobs", name, "dependencies")
            found.append(
                f"{config.path}:{line}: jobs.{name}.dependencies: {', '.join(missing)} not set; "
                "the job refuses to run without them"
            )
    return found


def iter_problems(paths: list[str]) -> Iterator[tuple[str, IngestionConfig | None, list[str]]]:
    """Validate several files: (path, config or None, problems) for each."""
    for path in paths:
        try:
            yield path, load(path), []
        except ConfigError as exc:
            yield path, None, exc.problems
