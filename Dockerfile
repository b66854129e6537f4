# The team's MLflow server: MLflow with PostgreSQL + S3 drivers and this package (the `transfer-laws` app plugin,
# the /transfer-laws/ page and the CLI for the watch and sweep-worker services).
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

WORKDIR /app
# The CPU build of torch first: otherwise pip resolves the multi-GB CUDA wheel for the Lightning dependency.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY registry registry
COPY plugin plugin
COPY lightning_modules lightning_modules
COPY scripts scripts
# The constraint keeps that torch when installing the package.
RUN echo "torch==2.13.0" > constraints.txt && pip install -c constraints.txt .

# The image user owns the working directory: the default workspace (./transfer-laws-home) is created there.
RUN useradd --create-home --uid 1000 mlflow && chown mlflow /app
USER mlflow
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --retries=30 \
  CMD python -c "import urllib.request;urllib.request.urlopen('http://localhost:5000/health')"
CMD ["mlflow", "server", "--app-name", "transfer-laws", "--host", "0.0.0.0", "--port", "5000"]
