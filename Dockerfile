# Faultline's one image: every process of the Procfile runs from it (compose.production.yml gives each its command).
# Not built on our machines (they have no Docker daemon): see the README's "Operations", what was and was not run.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system faultline && useradd --system --gid faultline --home-dir /app --shell /usr/sbin/nologin faultline
WORKDIR /app

# The pinned dependencies first, so a change to the code does not reinstall them. pyproject.toml installs
# no package of its own (the apps run from the checkout), so this layer is the dependencies alone.
COPY pyproject.toml README.md ./
RUN pip install .

COPY --chown=faultline:faultline . .
USER faultline
EXPOSE 8000 8001
