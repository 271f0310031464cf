#!/usr/bin/env bash
# Frozen-build smoke test (Linux): build the one-folder app with PyInstaller, run its
# --self-test offscreen and a real window under Xvfb, and fail on any error or on any stderr
# line that is not known platform noise (packaging/stderr-allow.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${SMOKE_OUT:-build/smoke}
export PYINSTALLER_CONFIG_DIR="$PWD/build/pyinstaller-cache"
mkdir -p "$OUT"

echo "-- installing the build extra"
"$PY" -m pip install -q -e ".[build]"
echo "-- icons"
"$PY" packaging/make_icons.py
echo "-- pyinstaller"
t0=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath build/dist --workpath build/work \
  packaging/discbridge.spec
echo "   built in $(( $(date +%s) - t0 )) s, $(du -sh build/dist/DiscBridge | cut -f1)"
APP=build/dist/DiscBridge/discbridge

check_stderr() {  # $1 = stderr file
  local bad
  bad=$(grep -v -E -f packaging/stderr-allow.txt "$1" | grep -v '^\s*$' || true)
  if [ -n "$bad" ]; then
    echo "unexpected stderr from the frozen app:"; echo "$bad"; return 1
  fi
}

echo "-- frozen --self-test (offscreen)"
QT_QPA_PLATFORM=offscreen "$APP" --self-test >"$OUT/selftest.out" 2>"$OUT/selftest.err" || {
  cat "$OUT/selftest.out" "$OUT/selftest.err"; echo "self-test failed"; exit 1; }
cat "$OUT/selftest.out"
check_stderr "$OUT/selftest.err"

if command -v xvfb-run >/dev/null 2>&1; then
  echo "-- frozen main window under Xvfb"
  rm -f "$OUT/frozen-xvfb.png"
  env -u QT_QPA_PLATFORM xvfb-run -a -s "-screen 0 1280x1024x24" \
    "$APP" demo --screenshot "$OUT/frozen-xvfb.png" >"$OUT/xvfb.out" 2>"$OUT/xvfb.err" || {
      cat "$OUT/xvfb.out" "$OUT/xvfb.err"; echo "frozen app failed under Xvfb"; exit 1; }
  check_stderr "$OUT/xvfb.err"
  test -s "$OUT/frozen-xvfb.png" && echo "   window screenshot: $OUT/frozen-xvfb.png"
fi
echo "-- frozen build smoke test passed"
