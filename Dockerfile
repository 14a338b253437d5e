# kling-mcp as a container: MCP over stdio (run it with `docker run -i`), or hosted for a team with
# `--transport http` (compose.yaml runs two replicas on Postgres).
#   docker build -t kling-mcp .
#   docker run -i --rm -e ACEDATACLOUD_API_TOKEN -v "$HOME/Videos/Kling:/videos" kling-mcp
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install ".[postgres]" \
    && useradd --create-home --uid 10001 kling \
    && mkdir -p /videos \
    && chown kling /videos \
    && rm -rf /build

USER kling
WORKDIR /home/kling
# The journal stays in the user's data directory; videos go where a volume can be mounted.
ENV KLING_OUTPUT_DIR=/videos

ENTRYPOINT ["kling-mcp"]
