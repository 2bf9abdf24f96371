# suture as a sidecar image. See docs/deployment.md.
#
#   docker build -t suture .
#   podman build --format docker -t suture .        # --format docker: OCI images drop HEALTHCHECK
#   podman build --format docker --build-arg BASE_IMAGE=localhost/debian-python3 -t suture .
#
# BASE_IMAGE is python:3.11-slim, or any Debian bookworm image with python3 (3.11): CI builds from a
# debootstrap rootfs imported locally (tests/container_image.py), as no registry can be reached there.
#
# The builder compiles every wheel (durable_rules has no binary wheel: it needs gcc) and strips their
# extension modules; the runtime installs them offline into a venv and runs as uid 10001 on a
# read-only root: it writes to its state volume (/var/lib/suture) only. RUN --mount needs BuildKit
# (Docker's default since 23.0) or Podman/Buildah.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# python:3.11-slim carries Python's headers and ensurepip in /usr/local; Debian's python3 needs
# python3-dev and python3-venv for them. binutils: strip.
RUN set -eu; \
    pkgs="gcc libc6-dev binutils"; \
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
      || pkgs="$pkgs python3-dev"; \
    python3 -c 'import ensurepip' 2>/dev/null || pkgs="$pkgs python3-venv"; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; \
    rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build
WORKDIR /src
COPY . .
# A CA bundle at the usual place (mounted by CI, or the base's own) is the one pip trusts.
# The extension modules are stripped of symbols (wheels unpacked, stripped, packed: their RECORD
# stays true); never a vendored *.libs/ library: auditwheel patched those, and strip can break that.
RUN set -eu; \
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; fi; \
    /opt/build/bin/pip install -q --upgrade pip wheel; \
    /opt/build/bin/pip wheel -q --wheel-dir /wheels . pip; \
    mkdir /tmp/unpacked; \
    for whl in /wheels/*.whl; do \
      case "$whl" in *-none-any.whl) continue ;; esac; \
      /opt/build/bin/python -m wheel unpack -d /tmp/unpacked "$whl" >/dev/null; \
      find /tmp/unpacked -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} +; \
      rm "$whl"; \
      /opt/build/bin/python -m wheel pack -d /wheels /tmp/unpacked/* >/dev/null; \
      rm -rf /tmp/unpacked/*; \
    done

FROM ${BASE_IMAGE}
ARG UID=10001
ENV PATH=/opt/suture/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    HOME=/var/lib/suture \
    XDG_CACHE_HOME=/var/lib/suture/.cache \
    TMPDIR=/tmp
# Offline: only the wheels built above (bind-mounted, so they never land in a layer). No pip left
# behind, no bytecode (~14 MB; costs ~0.5 s per start), no test suites.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels set -eu; \
    python3 -m venv --without-pip /opt/suture; \
    set -- /wheels/pip-*.whl; \
    /opt/suture/bin/python "$1/pip" install --quiet --no-index --find-links /wheels --no-cache-dir \
      --no-compile --disable-pip-version-check suture; \
    find /opt/suture -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +; \
    groupadd --gid "$UID" suture; \
    useradd --uid "$UID" --gid "$UID" --no-create-home --home-dir /var/lib/suture \
      --shell /usr/sbin/nologin suture; \
    install -d -o "$UID" -g "$UID" -m 0700 /var/lib/suture; \
    install -d -m 0755 /etc/suture /etc/suture/playbooks
USER ${UID}:${UID}
WORKDIR /etc/suture
VOLUME ["/var/lib/suture"]
# No EXPOSE: the API listens on loopback (api.listen in suture.yaml); reach it from the pod, or exec.
STOPSIGNAL SIGTERM
# The sidecar answers 200 while it runs; the body's overall_status is the *watched app's* health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SUTURE_HEALTH_URL', 'http://127.0.0.1:8765/api/monitoring/health'), timeout=4)"]
ENTRYPOINT ["suture", "run", "--config", "/etc/suture/suture.yaml"]
