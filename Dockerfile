# dfdetect serve on CPU: docker build -t dfdetect . && see docs/serving.md for running it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch + torchvision together from PyTorch's CPU index first: a plain `pip install` would pull the
# CUDA build (several GB), and torchvision must match torch.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.2" "torchvision>=0.17"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]" && rm -rf /src

# An unprivileged user; jobs, uploads and the key file live in the /data volume.
RUN useradd --create-home --uid 10001 dfdetect && mkdir -p /data && chown dfdetect:dfdetect /data
USER dfdetect
WORKDIR /home/dfdetect
ENV DFDETECT_DATA=/data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"

# Outside its own loopback a container needs keys: make one first (see docs/serving.md):
#   docker run --rm -v dfdetect-data:/data dfdetect --api-key-file /data/keys.txt --new-key alice
ENTRYPOINT ["dfdetect", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--api-key-file", "/data/keys.txt"]
