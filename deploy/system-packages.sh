#!/bin/sh
# Debian packages the offline side, the benchmarks and the test suite need (run as root).
# The README's test command and .ci/run both call this one script, so CI installs what the
# tests use; the edge box itself (`pip install .`) needs none of them.
#   chromium               the editor's browser test (Playwright drives it by executablePath)
#   dataset-fashion-mnist  Fashion-MNIST photographs, the object source of the photographic task
#   mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers-16.04, lomiri-wallpapers-20.04
#                          background photographs of the scenes (docs/data.md)
#   ffmpeg                 H.264 / HEVC baselines of the stream benchmark
#   g++                    torch.compile's CPU kernels (training's --compile; a test compiles one step)
set -eu
PACKAGES="chromium dataset-fashion-mnist mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 ffmpeg g++"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "error: missing Debian packages:$missing; run as root: sh deploy/system-packages.sh" >&2
    exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
