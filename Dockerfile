# The team's MLflow server: MLflow with PostgreSQL + S3 drivers and this package's core (the `transfer-laws` app
# plugin, the /transfer-laws/ page, the fitter and the refit / watch commands). The core needs no torch.
# `--build-arg EXTRAS=[train]` adds the training stack (docker-compose's sweep-worker image).
FROM python:3.12-slim

ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

WORKDIR /app
# With the training stack: the CPU build of torch first, otherwise pip resolves the multi-GB CUDA wheel for
# Lightning; the constraint keeps that torch when installing the package.
RUN touch constraints.txt && case "$EXTRAS" in *train*) \
      pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
      && echo "torch==2.13.0" > constraints.txt ;; esac
COPY pyproject.toml README.md ./
COPY registry registry
COPY plugin plugin
COPY lightning_modules lightning_modules
COPY scripts scripts
RUN pip install -c constraints.txt ".${EXTRAS}"

# The image user owns the working directory: the default workspace (./transfer-laws-home) is created there.
RUN useradd --create-home --uid 1000 mlflow && chown mlflow /app
USER mlflow
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --retries=30 \
  CMD python -c "import urllib.request;urllib.request.urlopen('http://localhost:5000/health')"
CMD ["mlflow", "server", "--app-name", "transfer-laws", "--host", "0.0.0.0", "--port", "5000"]
