#!/bin/sh
# Install edge-runtime as a systemd service on an edge box (run as root from the repository root).
#   deploy/install.sh [PREFIX]      default PREFIX=/opt/edge-runtime
set -eu
PREFIX=${1:-/opt/edge-runtime}
HERE=$(cd "$(dirname "$0")/.." && pwd)

id edge-runtime >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin \
    --groups video edge-runtime
install -d -m 0755 "$PREFIX"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --upgrade "$HERE"     # no torch: the edge extra-free install
install -d -m 0750 -g edge-runtime /etc/edge-runtime /etc/edge-runtime/keys
if [ ! -e /etc/edge-runtime/edge.toml ]; then
    install -m 0640 -g edge-runtime "$HERE/deploy/edge.example.toml" /etc/edge-runtime/edge.toml
    echo "edit /etc/edge-runtime/edge.toml (endpoints, keys, source) before starting"
fi
install -m 0644 "$HERE/deploy/edge-runtime.service" /etc/systemd/system/edge-runtime.service
if [ "$PREFIX" != /opt/edge-runtime ]; then
    sed -i "s#/opt/edge-runtime#$PREFIX#g" /etc/systemd/system/edge-runtime.service
fi
"$PREFIX/venv/bin/edge-runtime" run --config /etc/edge-runtime/edge.toml --print-config >/dev/null
systemctl daemon-reload
systemctl enable edge-runtime.service
echo "installed; start with: systemctl start edge-runtime && journalctl -fu edge-runtime"
