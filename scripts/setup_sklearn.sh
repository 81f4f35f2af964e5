#!/usr/bin/env bash
# scikit-learn for `rvenc bench traffic` (its classifier harness, bench/traffic/traffic.py), under
# .deps/sklearn. Debian's python3-scipy depends on pythran, which pulls libboost1.74-dev and so
# conflicts with the libboost1.81-dev the build needs: the Python packages without that conflict
# are installed as usual, scipy and scikit-learn are unpacked from their .debs (apt-get download,
# dpkg -x) and found through PYTHONPATH (bench traffic sets it). Idempotent; scripts/setup.sh runs
# it when RVENC_SETUP_SKLEARN=1, and bench traffic names it when scikit-learn is missing. The
# harness runs on Debian's /usr/bin/python3 (the one these packages are built for).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET="$ROOT/.deps/sklearn"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

PACKAGES=(python3 python3-numpy python3-joblib python3-threadpoolctl python3-decorator libblas3 liblapack3 libgfortran5 libgomp1 liblbfgsb0)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup_sklearn: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -f "$TARGET/.done" ] && PYTHONPATH="$TARGET/usr/lib/python3/dist-packages" /usr/bin/python3 -c 'import sklearn' 2>/dev/null; then
  exit 0
fi
rm -rf "$TARGET"
mkdir -p "$TARGET/debs"
(cd "$TARGET/debs" && apt-get download python3-scipy python3-sklearn python3-sklearn-lib 2>&1 |
  grep -v '^W: Download is performed unsandboxed' || true)
for deb in "$TARGET"/debs/*.deb; do dpkg -x "$deb" "$TARGET"; done
PYTHONPATH="$TARGET/usr/lib/python3/dist-packages" /usr/bin/python3 -c 'import sklearn.ensemble, sklearn.metrics'
touch "$TARGET/.done"
echo "setup_sklearn: scikit-learn in $TARGET/usr/lib/python3/dist-packages"
