#!/usr/bin/env bash
# Builds the fbnet_bench runner for aarch64 Linux (glibc) against the aarch64 executorch wheel,
# into android_app/build-aarch64/, for running under qemu-user: an emulated arm64 phone whose
# XNNPACK picks ARM kernels (benchmarks/arm_runner_check.py, docs/android.md). Real phones use
# build_android.sh (NDK, bionic, static). Idempotent; the last line on stdout is the binary.
#
# Needs: Debian's g++-aarch64-linux-gnu; network access to PyPI once (pip download of
# executorch==<the venv's version> for manylinux_2_28_aarch64).
#
# Environment (all optional): PYTHON, CMAKE (as build_host.sh), FBNET_AARCH64_DIR (build folder).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="${FBNET_AARCH64_DIR:-$HERE/build-aarch64}"
BIN="$OUT/build/fbnet_bench"

die() { echo "build_linux_aarch64.sh: error: $*" >&2; exit 1; }

source "$HERE/toolchain.sh"  # PY and CM
command -v aarch64-linux-gnu-g++ >/dev/null \
  || die "no aarch64-linux-gnu-g++: apt-get install g++-aarch64-linux-gnu"
VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("executorch"))')" \
  || die "cannot read the executorch version of $PY"

# ------------------------------------------------- the aarch64 wheel, unpacked
WHEEL_DIR="$OUT/wheel"
ET_DIR="$WHEEL_DIR/executorch"
if [[ ! -f "$ET_DIR/share/cmake/executorch-config.cmake" || "$(cat "$WHEEL_DIR/.version" 2>/dev/null)" != "$VERSION" ]]; then
  rm -rf "$WHEEL_DIR"
  mkdir -p "$WHEEL_DIR"
  "$PY" -m pip download -q --no-deps --only-binary :all: --platform manylinux_2_28_aarch64 \
    --python-version "$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')" \
    -d "$WHEEL_DIR" "executorch==$VERSION" >&2 \
    || die "pip download of the aarch64 executorch==$VERSION wheel failed (network?)"
  "$PY" -m zipfile -e "$WHEEL_DIR"/executorch-*.whl "$WHEEL_DIR" >&2
  [[ -f "$ET_DIR/share/cmake/executorch-config.cmake" ]] \
    || die "the aarch64 wheel has no share/cmake/executorch-config.cmake"
  printf '%s' "$VERSION" > "$WHEEL_DIR/.version"
fi

# ------------------------------------------------------------- build
GEN_ARGS=()
for cand in "$(dirname "$PY")/ninja" "$(command -v ninja || true)"; do
  if [[ -n "$cand" && -x "$cand" ]]; then GEN_ARGS=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$cand"); break; fi
done
if [[ ! -f "$OUT/build/CMakeCache.txt" ]]; then
  "$CM" -S "$HERE" -B "$OUT/build" ${GEN_ARGS[@]+"${GEN_ARGS[@]}"} \
    -DCMAKE_TOOLCHAIN_FILE="$HERE/aarch64-linux-gnu.cmake" \
    -DCMAKE_BUILD_TYPE=Release \
    -DFBNET_EXECUTORCH_MODE=wheel \
    -DEXECUTORCH_WHEEL_DIR="$ET_DIR" >&2
fi
"$CM" --build "$OUT/build" --parallel "${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}" >&2
[[ -x "$BIN" ]] || die "build finished but $BIN is missing"
echo "$BIN"
