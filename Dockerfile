# Shoal: an S3-compatible object store, as a drop-in for the minio/minio image.
#   docker build -t shoal .
#   docker run -p 9000:9000 -v shoal-data:/data -e MINIO_ROOT_USER=admin -e MINIO_ROOT_PASSWORD=change-me shoal
# Compose files written for MinIO keep working: `command: server /data --console-address ":9001"` is accepted
# (the console address is ignored), and so are MINIO_ROOT_USER / MINIO_ROOT_PASSWORD.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shoal ./shoal
RUN pip install . && rm -rf /src

RUN useradd --system --uid 1000 --home-dir /data --shell /usr/sbin/nologin shoal \
    && mkdir -p /data && chown shoal:shoal /data
USER shoal
WORKDIR /data

# Settings: see `shoal server --help` or `shoal config reference`; e.g. SHOAL_BUCKETS=warehouse,uploads:versioned
ENV SHOAL_ADDRESS=:9000
VOLUME /data
EXPOSE 9000

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["shoal", "healthcheck"]

ENTRYPOINT ["shoal"]
CMD ["server", "/data"]
