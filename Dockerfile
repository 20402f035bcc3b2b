# One image for every ELA Ingest process (worker, beat, flower); the compose files choose the
# command. No secrets are baked in: they arrive at run time from .env (env_file) and mounts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system ela \
    && useradd --system --gid ela --create-home --home-dir /home/ela ela

WORKDIR /app

# The package first, so a config-only change reuses the installed layer.
COPY pyproject.toml README.md ./
COPY ela ./ela
COPY worker ./worker
COPY tasks ./tasks
COPY beat_schedules ./beat_schedules
RUN pip install . && rm -rf build *.egg-info

# The shipped configs are looked up in the working directory (ela/config.py: config_path).
COPY ingestion-config-dev.yaml ingestion-config-prd.yaml ./

# Mount points for the named volumes. Created here, owned by ela, so Docker seeds a fresh
# volume with this ownership and the non-root user can write its tokens and beat's schedule.
RUN mkdir -p /var/lib/ela/tokens /var/lib/ela/state \
    && chown -R ela:ela /var/lib/ela \
    && chmod 700 /var/lib/ela/tokens

ENV ELA_TOKEN_DIR=/var/lib/ela/tokens \
    ELA_STATE_DIR=/var/lib/ela/state

USER ela

CMD ["ela", "--help"]
