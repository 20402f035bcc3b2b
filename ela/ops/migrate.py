"""The origin's single legacy ``ingestion-config.yaml`` → ``ingestion-config-{dev,prd}.yaml``.

The legacy file served both environments of the GitHub Actions orchestrator: ``global`` held
``gcs_bucket_dev`` / ``gcs_bucket_prd``, each job named the environments it ran in
(``environment: dev | prd | both`` or a list) and ran a shell ``command`` such as
``python scripts/spotify_ingest.py --data-type recently_played --limit 50``. A value that
differs by environment is written either as a suffixed key (``schedule_dev``), as a mapping
(``schedule: {dev: ..., prd: ...}``), or as two jobs suffixed ``_dev`` / ``_prd`` with their
own ``environment``. All three are read.

The command's flags become fields (``--limit``, ``--days``, ``--time-range``); the service
comes from the script (``spotify_ingest.py``) or the job name, the data type from
``--data-type`` or the job name. Whatever cannot be carried over, or had to be guessed, is a
note of one line, ``FILE:LINE: where: what``, so the user can review the result in one pass.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml import YAMLError as RuamelYAMLError

from ela import config as config_module
from ela import cron
from ela.config import ENVS
from ela.connectors import SERVICES
from ela.errors import ConfigError

# SPEC §2, per environment: used when the legacy file has no value for a setting.
ENV_DEFAULTS: dict[str, dict[str, int]] = {
    "dev": {
        "retry_attempts": 2,
        "max_parallel_jobs": 3,
        "timeout_minutes": 15,
        "error_retention_days": 7,
    },
    "prd": {
        "retry_attempts": 3,
        "max_parallel_jobs": 5,
        "timeout_minutes": 45,
        "error_retention_days": 14,
    },
}
GLOBAL_KEYS = ("retry_attempts", "max_parallel_jobs", "timeout_minutes", "error_retention_days")
JOB_KEYS = {
    "description",
    "command",
    "schedule",
    "enabled",
    "environment",
    "dependencies",
    "service",
    "data_type",
}
FLAG_FIELDS = {
    "--limit": "limit",
    "--days": "days",
    "--time-range": "time_range",
    "--time_range": "time_range",
}
DATA_TYPE_FLAGS = ("--data-type", "--data_type", "--type")
TIME_RANGES = ("short_term", "medium_term", "long_term")
_ENV_SUFFIX = re.compile(r"^(?P<base>.+?)[_-](?P<env>dev|prd)$")
_SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&"}


@dataclasses.dataclass
class Migration:
    """The two files' texts and their validated configs; notes on what could not be carried over."""

    source: Path
    texts: dict[str, str]
    configs: dict[str, config_module.IngestionConfig]
    notes: list[str]

    def paths(self, out_dir: Path) -> dict[str, Path]:
        return {env: out_dir / f"ingestion-config-{env}.yaml" for env in self.texts}


class _Notes:
    """Notes as ``FILE:LINE: where: message``, deduplicated."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.found: list[tuple[int, str]] = []

    def add(self, node: Any, key: Any, where: str, message: str) -> None:
        self.at(_line(node, key), where, message)

    def at(self, line: int, where: str, message: str) -> None:
        item = (line, f"{self.filename}:{line}: {where}: {message}")
        if item not in self.found:
            self.found.append(item)

    @property
    def items(self) -> list[str]:
        """In file order, so the notes read alongside the legacy file."""
        return [text for _, text in sorted(self.found, key=lambda item: item[0])]


def _line(node: Any, key: Any) -> int:
    """The 1-based line of ``key`` in a ruamel mapping (or of the mapping itself)."""
    try:
        if key is not None and hasattr(node, "lc"):
            return int(node.lc.key(key)[0]) + 1
        return int(node.lc.line) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return 1


def _per_env(node: Any, key: str, env: str) -> tuple[Any, str, Any]:
    """``key``'s value for ``env``: (value, how, the key it was read from).

    ``how`` is ``env`` (``key_env`` or ``key: {env: ...}``), ``shared`` (one value for both) or
    ``missing``.
    """
    if not isinstance(node, dict):
        return None, "missing", key
    if f"{key}_{env}" in node:
        return node[f"{key}_{env}"], "env", f"{key}_{env}"
    value = node.get(key)
    if isinstance(value, dict) and set(value) <= set(ENVS):
        return value.get(env), "env" if env in value else "missing", key
    if key in node:
        return value, "shared", key
    return None, "missing", key


def _per_env_keys(key: str) -> set[str]:
    return {key, *(f"{key}_{env}" for env in ENVS)}


def migrate(path: Path) -> Migration:
    """Read the legacy file at ``path`` and build both env files' texts; writes nothing.

    Raises:
        ConfigError: the file cannot be read, is not YAML or has no jobs; or a result does not
            validate (which is a bug in the migration, reported with the result's lines).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}:1: cannot read the file: {exc.strerror}"]) from None
    try:
        data = YAML(typ="rt").load(text)
    except RuamelYAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{path}:{line}: not valid YAML: {reason}"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict) or not data["jobs"]:
        raise ConfigError([f"{path}:1: not a legacy ingestion config: expected a jobs mapping"])

    notes = _Notes(str(path))
    services_in: dict[str, Any] = data["services"] if isinstance(data.get("services"), dict) else {}
    jobs = _jobs(data["jobs"], services_in, notes)
    globs = _globals(data, notes)
    texts: dict[str, str] = {}
    for env in ENVS:
        glob = globs[env]
        groups = _groups(data.get("job_groups"), env, jobs, notes)
        services = _services(services_in, env, jobs[env], notes)
        texts[env] = _render(env, path.name, glob, groups, jobs[env], services)
    configs = {
        env_name: config_module.loads(
            body, f"ingestion-config-{env_name}.yaml", expect_env=env_name
        )
        for env_name, body in texts.items()
    }
    return Migration(path, texts, configs, notes.items)


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


# -- global -------------------------------------------------------------------------------------


def _globals(data: Any, notes: _Notes) -> dict[str, dict[str, Any]]:
    """Both environments' ``global`` sections; a guess is one note for both."""
    glob = data.get("global") if isinstance(data.get("global"), dict) else {}
    line = _line(data, "global") if "global" in data else 1
    result: dict[str, dict[str, Any]] = {env: {"environment": env} for env in ENVS}
    timezone = glob.get("timezone")
    if timezone not in (None, "UTC"):
        notes.add(
            glob,
            "timezone",
            "global.timezone",
            f"{timezone} was declared but the origin's workflows ran cron in UTC (GitHub "
            "Actions); wrote UTC so every job keeps firing at the same instants",
        )
    for env in ENVS:
        result[env]["timezone"] = "UTC"
    for key in GLOBAL_KEYS[:2]:
        _global_int(glob, line, key, result, notes)
    buckets = {env: _per_env(glob, "gcs_bucket", env) for env in ENVS}
    for env, (bucket, how, _) in buckets.items():
        result[env]["gcs_bucket"] = bucket if how == "env" and isinstance(bucket, str) else ""
    guessed = [env for env in ENVS if not result[env]["gcs_bucket"]]
    for env in guessed:
        result[env]["gcs_bucket"] = f"ela-dp-{env}"
    if guessed:
        shared = buckets[guessed[0]][1] == "shared"
        what = "one bucket for both environments" if shared else "no gcs_bucket_{dev,prd}"
        used = " and ".join(f"ela-dp-{env} ({env})" for env in guessed)
        notes.at(
            _line(glob, "gcs_bucket") if shared else line,
            "global.gcs_bucket",
            f"{what}; used {used}",
        )
    for key in GLOBAL_KEYS[2:]:
        _global_int(glob, line, key, result, notes)
    known = {"environment", "timezone", *_per_env_keys("gcs_bucket")}
    for key in GLOBAL_KEYS:
        known |= _per_env_keys(key)
    for key in glob:
        if key not in known:
            notes.add(glob, key, f"global.{key}", "no equivalent in the new format; dropped")
    return result


def _global_int(
    glob: Any, line: int, key: str, result: dict[str, dict[str, Any]], notes: _Notes
) -> None:
    """Set ``key`` for both environments, noting a missing or shared value once."""
    defaulted: list[str] = []
    for env in ENVS:
        value, how, where = _per_env(glob, key, env)
        if how == "missing" or not isinstance(value, int) or isinstance(value, bool):
            value = ENV_DEFAULTS[env][key]
            defaulted.append(f"{value} for {env}")
        elif how == "shared":
            notes.add(
                glob,
                where,
                f"global.{key}",
                f"one value ({value}) for both dev and prd; kept it in both (SPEC §2 suggests "
                f"{ENV_DEFAULTS['dev'][key]} / {ENV_DEFAULTS['prd'][key]})",
            )
        result[env][key] = value
    if defaulted:
        notes.at(line, f"global.{key}", f"not set; used {', '.join(defaulted)} (SPEC §2)")


# -- jobs ---------------------------------------------------------------------------------------


def _job_envs(name: str, line: int, spec: Any, notes: _Notes) -> tuple[str, list[str]]:
    """The job's base name and the environments it runs in."""
    match = _ENV_SUFFIX.match(name)
    base = match.group("base") if match else name
    declared = spec.get("environment")
    if declared is None:
        if match:
            return base, [match.group("env")]
        notes.at(line, f"jobs.{name}", "no environment; put it in both files")
        return base, list(ENVS)
    values = declared if isinstance(declared, list) else [declared]
    envs: list[str] = []
    for value in values:
        if value in ("both", "all"):
            envs += ENVS
        elif value in ENVS:
            envs.append(value)
        else:
            notes.add(
                spec, "environment", f"jobs.{name}.environment", f"{value!r} is not dev or prd"
            )
    return base, list(dict.fromkeys(envs))


def _jobs(
    legacy: dict[str, Any], services: dict[str, Any], notes: _Notes
) -> dict[str, dict[str, dict[str, Any]]]:
    """Legacy jobs → {env: {job: fields}}, in the order the jobs first appear."""
    result: dict[str, dict[str, dict[str, Any]]] = {env: {} for env in ENVS}
    for name, spec in legacy.items():
        where = f"jobs.{name}"
        if not isinstance(spec, dict):
            notes.add(legacy, name, where, "not a mapping; not carried over")
            continue
        line = _line(legacy, name)
        base, envs = _job_envs(str(name), line, spec, notes)
        per_env_keys = {"command", "schedule", "enabled", "description"}
        for key in spec:
            plain = re.sub(r"_(dev|prd)$", "", str(key))
            if key not in JOB_KEYS and plain not in per_env_keys:
                notes.add(spec, key, f"{where}.{key}", "no equivalent in the new format; dropped")
        for env in envs:
            job = _job(str(name), line, base, spec, env, services, notes)
            if job is None:
                continue
            if base in result[env]:
                notes.at(line, where, f"a second {env} definition of {base}; kept the first")
                continue
            result[env][base] = job
    return result


def _job(
    name: str, line: int, base: str, spec: Any, env: str, services: dict[str, Any], notes: _Notes
) -> dict[str, Any] | None:
    where = f"jobs.{name}"
    schedule, _, skey = _per_env(spec, "schedule", env)
    if not isinstance(schedule, str):
        notes.at(line, where, f"no schedule for {env}; not carried over to {env}")
        return None
    try:
        cron.parse(schedule)
    except cron.CronError as exc:
        notes.add(spec, skey, f"{where}.{skey}", f"bad cron, not carried over: {exc}")
        return None

    command, _, ckey = _per_env(spec, "command", env)
    script, flags, leftovers = "", dict[str, str | None](), list[str]()
    if command is not None:
        parsed = _parse_command(str(command))
        if isinstance(parsed, str):
            notes.add(spec, ckey, f"{where}.{ckey}", f"{parsed}; not carried over")
            return None
        script, flags, leftovers = parsed
    cline = _line(spec, ckey) if command is not None else line

    service = spec.get("service") or _service_of(script, base, services)
    if service not in SERVICES:
        what = f"script {script}" if script else f"job name {base}"
        notes.at(
            cline,
            where,
            f"cannot tell the service from the {what} (known: {', '.join(SERVICES)}); "
            "not carried over",
        )
        return None
    data_type = spec.get("data_type") or next(
        (str(flags.pop(f)) for f in DATA_TYPE_FLAGS if f in flags), None
    )
    if data_type is None and base.startswith(f"{service}_"):
        data_type = base[len(service) + 1 :]
    data_type = (data_type or "").replace("-", "_")
    types = SERVICES[service].data_types
    if data_type not in types:
        notes.at(
            cline,
            where,
            f"{data_type or 'no data type'!r} is not a {service} data type "
            f"(known: {', '.join(types)}); not carried over",
        )
        return None

    job: dict[str, Any] = {}
    description, _, _ = _per_env(spec, "description", env)
    if description:
        job["description"] = str(description)
    job.update(service=service, data_type=data_type, schedule=schedule)
    enabled, _, _ = _per_env(spec, "enabled", env)
    job["enabled"] = enabled if isinstance(enabled, bool) else True
    job.update(_params(spec, ckey, where, service, data_type, flags, notes))
    for flag in leftovers:
        notes.add(spec, ckey, f"{where}.{ckey}", f"dropped {flag} (no equivalent)")
    dependencies = spec.get("dependencies")
    if isinstance(dependencies, list) and all(isinstance(d, str) for d in dependencies):
        job["dependencies"] = [str(d) for d in dependencies]
    elif dependencies is not None:
        notes.add(spec, "dependencies", f"{where}.dependencies", "not a list of names; dropped")
    return job


def _params(
    spec: Any,
    ckey: str,
    where: str,
    service: str,
    data_type: str,
    flags: dict[str, str | None],
    notes: _Notes,
) -> dict[str, Any]:
    """The command's parameter flags as fields, dropping what the data type does not take."""
    kind = SERVICES[service].data_types[data_type]
    params: dict[str, Any] = {}
    for flag, value in flags.items():
        field = FLAG_FIELDS.get(flag)
        shown = f"{flag} {value}" if value is not None else flag
        if field is None:
            notes.add(spec, ckey, f"{where}.{ckey}", f"dropped {shown} (no equivalent)")
            continue
        if field not in kind.params:
            notes.add(
                spec,
                ckey,
                f"{where}.{ckey}",
                f"dropped {shown} (does not apply to {service}/{data_type})",
            )
            continue
        if field == "time_range":
            if value not in TIME_RANGES:
                notes.add(spec, ckey, f"{where}.{ckey}", f"dropped {shown} (not a time range)")
                continue
            params[field] = value
            continue
        if value is None or not value.isdigit() or int(value) < 1:
            notes.add(spec, ckey, f"{where}.{ckey}", f"dropped {shown} (not a positive integer)")
            continue
        number = int(value)
        ceiling = kind.max_limit if field == "limit" else kind.max_days
        if ceiling is not None and number > ceiling:
            notes.add(
                spec,
                ckey,
                f"{where}.{ckey}",
                f"{shown} is above the {service} API's {ceiling} for {data_type}; wrote {ceiling}",
            )
            number = ceiling
        params[field] = number
    order = ("limit", "time_range", "days")
    return {key: params[key] for key in order if key in params}


def _parse_command(command: str) -> tuple[str, dict[str, str | None], list[str]] | str:
    """``python scripts/x_ingest.py --a 1 --b=2 --c`` → (script, flags, leftovers).

    Returns a one-line reason instead when the command is not a single script call.
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"cannot parse the command ({exc})"
    if any(word in _SHELL_OPERATORS for word in words) or not words:
        return "not a single script call (shell operators or empty)"
    scripts = [i for i, word in enumerate(words) if word.endswith(".py")]
    if not scripts:
        return f"no Python script in {command!r}"
    script, args = words[scripts[0]], words[scripts[0] + 1 :]
    flags: dict[str, str | None] = {}
    leftovers: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("--"):
            leftovers.append(word)
            i += 1
            continue
        flag, eq, value = word.partition("=")
        if eq:
            flags[flag] = value
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[flag] = args[i + 1]
            i += 1
        else:
            flags[flag] = None
        i += 1
    return script, flags, leftovers


def _service_of(script: str, base: str, services: dict[str, Any]) -> str | None:
    """The service a legacy job ran: the services section's ``script``, the script's name, or
    the job name's prefix."""
    for name, spec in services.items():
        if isinstance(spec, dict) and script and spec.get("script") in (script, Path(script).name):
            return str(name)
    stem = Path(script).stem if script else ""
    for candidate in (stem, base):
        head = re.split(r"[_-]", candidate, maxsplit=1)[0] if candidate else ""
        if head in SERVICES:
            return head
    return None


# -- groups and services ------------------------------------------------------------------------


def _groups(
    legacy: Any, env: str, jobs: dict[str, dict[str, dict[str, Any]]], notes: _Notes
) -> dict[str, dict[str, Any]]:
    """Groups for ``env``: members suffixed for the other env, or absent from it, drop out."""
    result: dict[str, dict[str, Any]] = {}
    if not isinstance(legacy, dict):
        return result
    for name, spec in legacy.items():
        where = f"job_groups.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("jobs"), list):
            notes.add(legacy, name, where, "not a mapping with a jobs list; not carried over")
            continue
        declared = spec.get("environment", "both")
        declared = declared if isinstance(declared, list) else [declared]
        if not ({env, "both", "all"} & set(declared)):
            continue
        members: list[str] = []
        for member in spec["jobs"]:
            match = _ENV_SUFFIX.match(str(member))
            if match and match.group("env") != env:
                continue
            base = match.group("base") if match else str(member)
            if base in jobs[env]:
                members.append(base)
            elif not any(base in jobs[other] for other in ENVS):
                notes.add(spec, "jobs", f"{where}.jobs", f"{member} is not a migrated job; dropped")
        members = list(dict.fromkeys(members))
        if members:
            group: dict[str, Any] = {}
            description, _, _ = _per_env(spec, "description", env)
            if description:
                group["description"] = str(description)
            group["jobs"] = members
            result[str(name)] = group
    return result


def _services(
    legacy: dict[str, Any], env: str, jobs: dict[str, dict[str, Any]], notes: _Notes
) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for name, spec in legacy.items():
        where = f"services.{name}"
        if name not in SERVICES:
            notes.add(legacy, name, where, f"not a known service ({', '.join(SERVICES)}); dropped")
            continue
        spec = spec if isinstance(spec, dict) else {}
        known = SERVICES[name].data_types
        types = [str(t) for t in spec.get("data_types") or known]
        for unknown in [t for t in types if t not in known]:
            notes.add(spec, "data_types", f"{where}.data_types", f"{unknown} is not known; dropped")
        entry: dict[str, Any] = {"data_types": [t for t in types if t in known]}
        limit, _, _ = _per_env(spec, "default_limit", env)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            entry["default_limit"] = limit
        for key in spec:
            if key not in {"data_types", "script", *_per_env_keys("default_limit")}:
                notes.add(spec, key, f"{where}.{key}", "no equivalent in the new format; dropped")
        result[str(name)] = entry
    for job in jobs.values():  # a service a job uses but the legacy file did not list
        if job["service"] not in result:
            result[job["service"]] = {"data_types": list(SERVICES[job["service"]].data_types)}
    return result


# -- rendering ----------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ ./()'-]*$")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text == text.strip() and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


def _flow(values: list[Any]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


def _render(
    env: str,
    source: str,
    glob: dict[str, Any],
    groups: dict[str, dict[str, Any]],
    jobs: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> str:
    """The env file in the shipped files' layout."""
    lines = [
        f"# ELA Ingest — {env.upper()} environment.",
        f"# Migrated from {source} by `ela config migrate`; review the notes it printed.",
        f"# Validate with `ela validate ingestion-config-{env}.yaml`; see README §Configuration.",
        "",
        "global:",
        *(f"  {key}: {_scalar(value)}" for key, value in glob.items()),
    ]
    if groups:
        lines += ["", "job_groups:"]
        for name, group in groups.items():
            lines.append(f"  {name}:")
            if "description" in group:
                lines.append(f"    description: {_scalar(group['description'])}")
            lines += ["    jobs:", *(f"      - {member}" for member in group["jobs"])]
    lines += ["", "jobs:"]
    for name, job in jobs.items():
        lines.append(f"  {name}:")
        for key, value in job.items():
            if key == "schedule":
                lines.append(f"    schedule: {json.dumps(value)}")
            elif isinstance(value, list):
                lines.append(f"    {key}: {_flow(value)}")
            else:
                lines.append(f"    {key}: {_scalar(value)}")
    if services:
        lines += ["", "services:"]
        for name, spec in services.items():
            lines.append(f"  {name}:")
            for key, value in spec.items():
                shown = _flow(value) if isinstance(value, list) else _scalar(value)
                lines.append(f"    {key}: {shown}")
    return "\n".join(lines) + "\n"
