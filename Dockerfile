# The bgjobs dashboard (and the job-run / job-status / job-cancel CLI) in one image.
#
#   docker build -t bgjobs .
#   docker run -p 8501:8501 -e BGJOBS_DASHBOARD_PASSWORD=change-me \
#       -v bgjobs-logs:/app/logs -v bgjobs-state:/app/state bgjobs
#
# The dashboard listens on 0.0.0.0 in the container, so the entrypoint refuses
# to start it without a password (or an OIDC [auth] section in a mounted
# /app/.streamlit/secrets.toml). tini is PID 1: it reaps the job runners that
# outlive their parent, so no zombie piles up.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    BGJOBS_CONFIG=/app/config.yaml

RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 bgjobs \
    && useradd --system --uid 10001 --gid bgjobs --create-home --home-dir /home/bgjobs \
       --shell /usr/sbin/nologin bgjobs

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY bgjobs ./bgjobs
# pip first: 25.2 and later write console scripts that do not import `re` (about
# 5 ms off each job-run). Then this project itself: its dependencies are ranged in
# pyproject.toml (DL3013 wants pins).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "pip>=25.2" \
    && pip install --no-cache-dir ".[dashboard]"

COPY jobs ./jobs
COPY dashboard.py config.yaml docker-entrypoint.sh ./
COPY .streamlit/config.toml ./.streamlit/config.toml

# The code stays root-owned and read-only for the app; only logs and state are writable.
# PYTHONPATH puts /app/bgjobs before the installed copy, and nothing may write bytecode
# at run time: compiled here, or every job-run and runner would compile it again
# (about 90 ms each).
RUN python -m compileall -q /app/bgjobs /app/jobs /app/dashboard.py \
    && chmod 0755 /app/docker-entrypoint.sh \
    && mkdir -p /app/logs /app/state \
    && chown bgjobs:bgjobs /app/logs /app/state
VOLUME ["/app/logs", "/app/state"]

USER 10001:10001
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker-entrypoint.sh"]
CMD ["streamlit", "run", "dashboard.py", "--server.address=0.0.0.0", "--server.port=8501", \
     "--server.headless=true", "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"]
