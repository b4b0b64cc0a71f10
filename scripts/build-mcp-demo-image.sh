#!/usr/bin/env bash
# Builds the demo MCP server image (examples/mcp/demo_server.py on the official MCP Python
# SDK) from the local base image: no registry is needed. The SDK's wheels come from PyPI
# (or pip's cache) for the base image's Python (Debian bookworm: 3.11, x86_64).
#
#   scripts/build-mcp-demo-image.sh [IMAGE]     (default agent-workspaces/mcp-demo:latest)
#
# Idempotent: an image built from the same server and SDK version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-agent-workspaces/mcp-demo:latest}
BASE=${BASE_IMAGE:-agent-workspaces/base:bookworm}
PY=${PY:-.venv/bin/python}
MCP_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("mcp"))')
STAMP=$( { cat examples/mcp/demo_server.py; echo "$MCP_VERSION $BASE"; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "agent-workspaces.stamp" }}' "$IMAGE" 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
"$PY" -m pip install -q --disable-pip-version-check --target "$context/site" --only-binary=:all: \
  --implementation cp --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  "mcp==$MCP_VERSION" 2> >(grep -v 'is ignored: it is neither' >&2)
cp examples/mcp/demo_server.py "$context/server.py"
cat > "$context/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY site /opt/mcp/site
COPY server.py /opt/mcp/server.py
ENV PYTHONPATH=/opt/mcp/site
LABEL agent-workspaces.stamp=$STAMP
DOCKERFILE
docker build -q -t "$IMAGE" "$context" >/dev/null
echo "built $IMAGE (MCP SDK $MCP_VERSION)"
