# Sonor: one image for the ASGI servers (manage.py serve: uvicorn) and the delivery workers
# (run_worker).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Run from the source tree: settings find frontend/ next to the packages.
    PYTHONPATH=/app \
    SONOR_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml manage.py ./
COPY chatserver ./chatserver
COPY identity ./identity
COPY notify ./notify
COPY frontend ./frontend
RUN pip install . \
    && useradd --system --no-create-home --home-dir /app sonor \
    && mkdir -p /data && chown sonor /data
USER sonor

EXPOSE 8000
# No proxy headers: the app decides the client address, believing X-Forwarded-For only
# from SONOR_TRUSTED_PROXIES (set it to the load balancer's addresses).
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0", "--port", "8000"]
