# giftwire server image. Redis and Postgres come from outside (see compose.yaml); the embedded
# extra is left out on purpose: a container should not carry its own database.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocol protocol
COPY server server
COPY loadtest loadtest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 giftwire
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER giftwire
ENV GIFTWIRE_HOST=0.0.0.0 \
    GIFTWIRE_PORT=8000 \
    GIFTWIRE_LOG_JSON=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# SIGTERM starts the graceful drain (going_away to every client, close 1001).
STOPSIGNAL SIGTERM
CMD ["giftwire", "serve"]
