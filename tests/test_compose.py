"""The compose files, as docker-compose itself resolves them, against the env configs.

``docker-compose config`` needs no Docker engine: it validates a file against the compose schema,
applies anchors, merges ``env_file`` and interpolates ``${VAR}`` from ``.env``. Each file is
resolved in a temporary copy of the repo's compose inputs with a ``.env`` made from
``.env.example`` (sentinel values, never a developer's real ``.env``), then checked against
``ingestion-config-{env}.yaml``. ``scripts/test`` installs ``docker-compose`` when run as root;
without it (and without ``docker compose`` v2) those tests skip and say so. The checks that only
read files run everywhere.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from ela import config as config_module

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("dev", "prd")
APP_SERVICES = ("worker", "beat", "flower")
# Credentials (SPEC §3) and FLOWER_BASIC_AUTH: they may come only from .env.
SECRETS = (
    "SPOTIFY_CLIENT_ID",
    "SPOTIFY_CLIENT_SECRET",
    "SPOTIFY_REFRESH_TOKEN",
    "STRAVA_CLIENT_ID",
    "STRAVA_CLIENT_SECRET",
    "STRAVA_REFRESH_TOKEN",
    "GARMIN_USERNAME",
    "GARMIN_PASSWORD",
    "TODOIST_API_TOKEN",
    "SENTRY_DSN",
    "FLOWER_BASIC_AUTH",
)
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN(?!_DIR)|_AUTH|DSN|API_KEY|PRIVATE")
# The host path of the service-account key, as a user's .env would give it.
HOST_KEY = "/srv/ela/gcp-service-account.json"


def compose_file(env: str) -> Path:
    return ROOT / f"docker-compose.{env}.yml"


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """``docker-compose`` (v1, Debian's package), else ``docker compose`` (v2), else None."""
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ("docker", "compose")
    return None


_no_compose = pytest.mark.skipif(
    compose_command() is None,
    reason="docker-compose is not installed (scripts/test installs it with apt-get when run "
    "as root; otherwise: apt-get install docker-compose)",
)


T = TypeVar("T")


def needs_compose(test: T) -> T:
    """Runs ``docker-compose`` (a process): skipped without it, and not in the fast tier."""
    return pytest.mark.integration(_no_compose(test))


def example_env() -> dict[str, str]:
    """``.env.example``'s active assignments, each filled with a sentinel value."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"([A-Z][A-Z0-9_]*)=", line)
        if match:
            values[match[1]] = f"sentinel-{match[1].lower()}"
    values["GOOGLE_APPLICATION_CREDENTIALS"] = HOST_KEY
    values["FLOWER_BASIC_AUTH"] = "sentinel-user:sentinel-password"
    return values


def run_config(env: str, workdir: Path, dotenv: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE config`` on a copy of FILE beside ``dotenv`` as its .env."""
    command = compose_command()
    assert command is not None
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (compose_file(env).name, "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, workdir / name)
    (workdir / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    # Nothing from the caller's shell may leak into the interpolation.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    return subprocess.run(
        [*command, "-f", str(workdir / compose_file(env).name), "config"],
        cwd=workdir,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if compose_command() is None:
        pytest.skip("docker-compose is not installed")
    out = {}
    for env in ENVS:
        result = run_config(env, tmp_path_factory.mktemp(f"compose-{env}"), example_env())
        assert result.returncode == 0, f"{compose_file(env).name}: {result.stderr}"
        out[env] = yaml.safe_load(result.stdout)
    return out


def raw(env: str) -> dict[str, Any]:
    loaded = yaml.safe_load(compose_file(env).read_text())  # safe_load applies `<<` merges
    assert isinstance(loaded, dict)
    return loaded


def as_dict(value: Any) -> dict[str, str]:
    """An ``environment`` or ``labels`` mapping, given as a mapping or a KEY=VALUE list."""
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return dict(str(item).partition("=")[::2] for item in value or [])


def ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, published, target) of each published port, v1 strings or v2 mappings."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append(
                (str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"]))
            )
            continue
        parts = str(port).split("/")[0].split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        published = parts[-2] if len(parts) >= 2 else ""
        found.append((host_ip, published, parts[-1]))
    return found


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read only) of each volume, v1 strings or v2 mappings."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.append(
                (str(volume.get("source", "")), volume["target"], bool(volume.get("read_only")))
            )
            continue
        parts = str(volume).split(":")
        mode = parts[2] if len(parts) > 2 else "rw"
        found.append((parts[0], parts[1], "ro" in mode.split(",")))
    return found


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command", [])
    return value.split() if isinstance(value, str) else [str(part) for part in value]


def option(argv: list[str], *names: str) -> str | None:
    """The value of ``--name=V`` / ``--name V`` / ``-n V`` in argv, or None."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
    return None


# -- docker-compose's own validation, and the shape ---------------------------------------------


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_docker_compose_accepts_the_file(resolved: dict[str, Any], env: str) -> None:
    assert {"redis", "worker", "beat", "flower"} <= set(resolved[env]["services"])


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_worker_beat_and_flower_are_one_image(resolved: dict[str, Any], env: str) -> None:
    services = resolved[env]["services"]
    builds = {
        name: (services[name].get("image"), str(services[name]["build"])) for name in APP_SERVICES
    }
    assert len(set(builds.values())) == 1, builds
    assert services["worker"]["build"]["context"]  # built from this repo, not pulled


def test_app_services_reuse_one_anchor() -> None:
    for env in ENVS:
        text = compose_file(env).read_text()
        assert re.search(r"^x-app: &app$", text, re.M), f"{env}: no x-app: &app anchor"
        for name in APP_SERVICES:
            block = re.search(rf"^  {name}:\n((?:    .*\n|\n)+)", text, re.M)
            assert block and "<<: *app" in block[1], f"{env}: {name} does not reuse *app"


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_each_file_runs_its_own_environment(resolved: dict[str, Any], env: str) -> None:
    for name in APP_SERVICES:
        service = resolved[env]["services"][name]
        assert as_dict(service["environment"])["ELA_ENV"] == env, name
        assert option(command(service), "--env") in (None, env), name
        assert as_dict(service.get("labels")).get("ela.env", env) == env, name
        assert as_dict(service["environment"])["REDIS_URL"].startswith("redis://redis:"), name


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_worker_concurrency_is_the_configs(resolved: dict[str, Any], env: str) -> None:
    config = config_module.load(ROOT / f"ingestion-config-{env}.yaml", expect_env=env)
    wanted = str(config.global_.max_parallel_jobs)
    worker = resolved[env]["services"]["worker"]
    assert option(command(worker), "--concurrency", "-c") in (None, wanted)
    assert as_dict(worker.get("labels"))["ela.worker-concurrency"] == wanted


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_worker_stops_with_a_soft_shutdown_inside_the_grace_period(
    resolved: dict[str, Any], env: str
) -> None:
    """SIGQUIT is Celery's cold shutdown with the soft grace (SIGTERM would wait for every run,
    up to the hard time limit); Docker's SIGKILL must come after that grace and the requeue."""
    from worker.settings import SHUTDOWN_GRACE_S

    worker = resolved[env]["services"]["worker"]
    assert worker["stop_signal"] == "SIGQUIT"
    grace = re.fullmatch(r"(\d+)s", str(worker["stop_grace_period"]))
    assert grace and int(grace[1]) >= SHUTDOWN_GRACE_S + 5, worker["stop_grace_period"]


# -- Flower: authenticated, loopback only --------------------------------------------------------


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_flower_has_basic_auth_and_publishes_on_loopback_only(
    resolved: dict[str, Any], env: str
) -> None:
    services = resolved[env]["services"]
    flower = services["flower"]
    assert as_dict(flower["environment"])["FLOWER_BASIC_AUTH"] == "sentinel-user:sentinel-password"
    # `ela flower` refuses to start without FLOWER_BASIC_AUTH; plain `celery flower` would not.
    assert command(flower)[:2] == ["ela", "flower"]
    published = ports(flower)
    assert published and all(host_ip == "127.0.0.1" for host_ip, _, _ in published), published
    assert ("127.0.0.1", "5555", "5555") in published
    # Nothing else is reachable from outside the compose network, Redis least of all.
    assert all(not ports(services[name]) for name in services if name != "flower")


@needs_compose
@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("missing", ["FLOWER_BASIC_AUTH", "GOOGLE_APPLICATION_CREDENTIALS"])
def test_the_file_does_not_render_without_required_settings(
    tmp_path: Path, env: str, missing: str
) -> None:
    dotenv = example_env()
    dotenv[missing] = ""
    result = run_config(env, tmp_path, dotenv)
    assert result.returncode != 0
    assert missing in result.stderr


# -- Persistence: Redis in prd, tokens, beat's state, the GCS key -------------------------------


@needs_compose
def test_prd_redis_is_persistent(resolved: dict[str, Any]) -> None:
    redis = resolved["prd"]["services"]["redis"]
    argv = command(redis)
    assert option(argv, "--appendonly") == "yes", argv
    named = set(resolved["prd"].get("volumes") or {})
    assert any(source in named and target == "/data" for source, target, _ in mounts(redis))


@needs_compose
@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("variable", ["ELA_TOKEN_DIR", "ELA_STATE_DIR"])
def test_token_store_and_beat_state_are_named_volumes_where_the_app_looks(
    resolved: dict[str, Any], env: str, variable: str
) -> None:
    named = set(resolved[env].get("volumes") or {})
    for name in APP_SERVICES:
        service = resolved[env]["services"][name]
        where = as_dict(service["environment"])[variable]
        assert where.startswith("/"), f"{name}: {variable}={where!r}"
        matching = [m for m in mounts(service) if m[1] == where]
        assert matching, f"{name}: nothing mounted at {variable}={where}"
        source, _, read_only = matching[0]
        assert source in named and not read_only, f"{name}: {matching[0]}"
        # The image creates the mount point, so a fresh volume is owned by the non-root user.
        assert where in (ROOT / "Dockerfile").read_text()


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_gcs_key_is_mounted_read_only_from_the_path_in_env(
    resolved: dict[str, Any], env: str
) -> None:
    for name in APP_SERVICES:
        service = resolved[env]["services"][name]
        inside = as_dict(service["environment"])["GOOGLE_APPLICATION_CREDENTIALS"]
        assert (HOST_KEY, inside, True) in mounts(service), mounts(service)


# -- Secrets: only from .env ---------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_is_written_in_the_compose_file(env: str) -> None:
    for name, service in raw(env)["services"].items():
        for key, value in as_dict(service.get("environment")).items():
            if key in SECRETS or SECRET_LIKE.search(key):
                # Only an interpolation of the same variable from .env, never a literal.
                assert re.fullmatch(rf"\$\{{{key}(:\?[^}}]*)?\}}", value), f"{name}: {key}"
    text = compose_file(env).read_text()
    for key in SECRETS:
        # KEY: value / KEY=value anywhere (comments too), unless the value is ${KEY...}.
        assert not re.search(rf"(?<![\w{{]){key}\s*[:=]\s*(?!\$\{{{key}[:}}])\S", text), key


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_secrets_reach_the_containers_only_through_their_environment(
    resolved: dict[str, Any], env: str
) -> None:
    """Every credential comes from .env unchanged, and none is put on a command line or label."""
    sentinels = {k: v for k, v in example_env().items() if k in SECRETS}
    for name in APP_SERVICES:
        service = dict(resolved[env]["services"][name])
        environment = as_dict(service.pop("environment"))
        for key, value in sentinels.items():
            assert environment.get(key) == value, f"{name}: {key} is not .env's"
        rest = yaml.safe_dump(service)
        assert not [key for key, value in sentinels.items() if value in rest], name


def test_env_example_documents_every_variable_of_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    assert len(documented) > 20, "the README's env-var table was not found"
    example = (ROOT / ".env.example").read_text()
    present = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.M))
    interpolated = {
        name
        for env in ENVS
        for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_file(env).read_text())
    }
    assert sorted((documented | interpolated | set(SECRETS)) - present) == []


def test_env_example_holds_no_values() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            assert match[2] == "", f".env.example: {match[1]} has a value"


# -- The image -----------------------------------------------------------------------------------


def test_dockerfile_is_slim_non_root_and_secret_free() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), users
    for key in (*SECRETS, "GOOGLE_APPLICATION_CREDENTIALS"):
        assert key not in text, f"Dockerfile mentions {key}"
    assert not re.search(r"^COPY .*\.env\b", text, re.M)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git/", ".venv/"} <= entries
