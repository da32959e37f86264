FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git util-linux && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY tamma ./tamma
RUN pip install --no-cache-dir .
USER 1000
CMD ["python", "worker.py"]
