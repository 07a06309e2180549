# syntax=docker/dockerfile:1
# Build stage: compile a wheel and install it with its dependencies into a venv.
FROM python:3.11-slim AS build
WORKDIR /src
# npm installs the web UI's charting library (ui/package-lock.json) for the build hook; gcc
# compiles the OTLP fast path (src/processor/mapping/_wire.c).
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml hatch_build.py README.md alembic.ini ./
COPY src ./src
COPY alembic ./alembic
COPY protos ./protos
COPY ui/package.json ui/package-lock.json ./ui/
# The build hook compiles protos/ with grpcio-tools (fetched as a build requirement).
RUN pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir .

# Runtime stage: the venv, the migrations and a non-root user; no compilers.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin processor
WORKDIR /app
RUN chown processor /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=processor alembic.ini migrate.sh ./
COPY --chown=processor alembic ./alembic
COPY --chown=processor src ./src
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BIND_ADDRESS=0.0.0.0 \
    PORT=4317 \
    HTTP_PORT=4318
USER processor
EXPOSE 4317 4318
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,os;urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"HTTP_PORT\",\"4318\")}/liveness',timeout=2)"
CMD ["sh", "-c", "./migrate.sh && exec telemetry-processor serve --no-migrate"]
