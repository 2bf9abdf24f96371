# suture as a sidecar image. Minimal for now; see README "Run as a sidecar".
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE}
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels suture && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /var/lib/suture suture \
 && mkdir -p /var/lib/suture /etc/suture && chown suture /var/lib/suture
USER suture
VOLUME ["/var/lib/suture"]
ENTRYPOINT ["suture", "run", "--config", "/etc/suture/suture.yaml"]
