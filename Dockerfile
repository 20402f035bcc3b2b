# One image for every ELA Ingest process (worker, beat, flower); the compose files choose the
# command. No secrets are baked in: they arrive at run time from per-service env files and a
# read-only key mount (docs/deployment.md).
#
# The base is pinned by version and digest, so a rebuild gets the same Python and Debian. To
# move it, change both together (the digest of the new tag:
# `docker buildx imagetools inspect python:3.11.N-slim-bookworm`), rebuild, run
# scripts/compose-smoke. Where the registry cannot be reached, --build-arg PYTHON_IMAGE=… names
# a locally made base instead (scripts/compose-smoke does).
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm@sha256:0a310eeecf4e1f5a0743f9a6520c90c88d089c903ca5fd283f501e3a805f5f89

# -- build: a virtualenv with the pinned dependencies, then the package ------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/ela

# Dependencies alone, in their own layer: exactly the lock's versions, every file checked
# against its hash. Only a change to requirements.lock (scripts/lock) downloads them again.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/ela/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock

# Then the package, with the build backend the lock pinned (no build isolation: nothing
# unpinned is fetched). A code or README change rebuilds from here, in seconds.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ela ./ela
COPY worker ./worker
COPY tasks ./tasks
COPY beat_schedules ./beat_schedules
RUN /opt/ela/bin/pip install --no-deps --no-build-isolation . \
    && /opt/ela/bin/pip uninstall --yes pip setuptools

# -- runtime: the virtualenv, the configs, a fixed non-root user -------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/ela/bin:$PATH

# A fixed UID/GID, not whatever `useradd --system` hands out: a key file or a host folder can
# then be made readable by it ahead of time (chown 10001 key.json; README). 10001 is above the
# ranges Debian gives to system and login users, so it matches no account on a typical host.
RUN groupadd --gid 10001 ela \
    && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/ela ela

COPY --from=build /opt/ela /opt/ela

WORKDIR /app
# The shipped configs are looked up in the working directory (ela/config.py: config_path).
COPY ingestion-config-dev.yaml ingestion-config-prd.yaml ./

# The token volume's mount point. Created here, owned by ela, so Docker seeds a fresh volume
# with this ownership and the non-root user can write its tokens.
RUN mkdir -p /var/lib/ela/tokens \
    && chown -R 10001:10001 /var/lib/ela \
    && chmod 700 /var/lib/ela/tokens

ENV ELA_TOKEN_DIR=/var/lib/ela/tokens

USER 10001:10001

CMD ["ela", "--help"]
