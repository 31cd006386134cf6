# NanoClone's container image: `serve` (web server and cluster) as a non-root user, its data in
# the /data volume. Build it with the health check kept (OCI images drop HEALTHCHECK):
#   podman build --format docker -t nanoclone .      or      docker build -t nanoclone .
# The base is the official Python image, Debian bookworm with Python 3.11 (python:3.11-slim-bookworm
# on Docker Hub); PYTHON_IMAGE picks another of the same kind (a mirror, a pinned digest).
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# The dependencies, in a virtualenv the final image copies: no pip, build files or caches there.
FROM ${PYTHON_IMAGE} AS dependencies
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/nanoclone
# pyproject.toml lists the dependencies; the version comes from nanoclone/__init__.py. Copying only
# these keeps this layer cached until a dependency changes.
COPY pyproject.toml README.md /src/
COPY nanoclone/__init__.py /src/nanoclone/
RUN /opt/nanoclone/bin/pip install /src && /opt/nanoclone/bin/pip uninstall --yes nanoclone pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="NanoClone" \
      org.opencontainers.image.description="Self-hosted studio and gateway for Google's Gemini image models" \
      org.opencontainers.image.version="0.2.0"
RUN useradd --system --user-group --uid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin nanoclone \
 && install -d -o nanoclone -g nanoclone -m 0700 /data
COPY --from=dependencies /opt/nanoclone /opt/nanoclone
WORKDIR /app
COPY manage.py ./
COPY nanoclone nanoclone
COPY keys keys
COPY conversations conversations
COPY gallery gallery
COPY templates templates
COPY static static
# Compiled now, as root: the app's files stay read-only to the user that runs it.
RUN /opt/nanoclone/bin/python -m compileall -q /app
ENV PATH=/opt/nanoclone/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NANOCLONE_DATA_DIR=/data
USER nanoclone
# The database (SQLite), the images (local store), the generated secrets and admin password.
VOLUME /data
EXPOSE 8000
# /health answers 200 while the app serves ("degraded" too: no key yet, or no cluster alive), 503
# when the database or the media store doesn't answer. Host: localhost must stay allowed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://localhost:{os.environ.get(\"NANOCLONE_PORT\", 8000)}/health', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "manage.py"]
CMD ["serve", "--host", "0.0.0.0"]
