#!/usr/bin/env bash
# Builds the fbnet_bench runner for this machine against the executorch pip
# wheel, into android_app/build-host/. Idempotent: a second run with nothing
# changed returns at once. Build output goes to stderr; the last line on
# stdout is the binary's path.
#
# Environment (all optional):
#   PYTHON           Python with executorch installed (default: <repo>/.venv/bin/python,
#                    else python3 on PATH)
#   CMAKE            cmake >= 3.28 (default: the one next to PYTHON, else cmake on PATH)
#   FBNET_BUILD_DIR  build folder (default: android_app/build-host)
#   FBNET_BUILD_TYPE CMake build type (default: Release)
#   JOBS             parallel jobs (default: number of CPUs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
BUILD_DIR="${FBNET_BUILD_DIR:-$HERE/build-host}"
BUILD_TYPE="${FBNET_BUILD_TYPE:-Release}"
BIN="$BUILD_DIR/fbnet_bench"

die() { echo "build_host.sh: error: $*" >&2; exit 1; }

# ------------------------------------------------------- python, cmake
source "$HERE/toolchain.sh"  # PY and CM

# executorch is a namespace package (no __init__.py, __file__ is None), so
# fall back to its __path__.
ET_DIR="$("$PY" -c 'import executorch,os
f = getattr(executorch, "__file__", None)
print(os.path.dirname(f) if f else list(executorch.__path__)[0])' 2>/dev/null)" \
  || die "cannot import executorch with $PY (pip install executorch==1.5.1 into the venv)"
[[ -f "$ET_DIR/share/cmake/executorch-config.cmake" ]] \
  || die "$ET_DIR has no share/cmake/executorch-config.cmake (is this an executorch wheel with C++ libraries?)"

# ------------------------------------------------------------ generator
GEN_ARGS=()
NINJA=""
for cand in "$(dirname "$PY")/ninja" "$(command -v ninja || true)"; do
  if [[ -n "$cand" && -x "$cand" ]]; then NINJA="$cand"; break; fi
done

# ------------------------------------------------------- fast no-op path
# One build at a time: a second caller (two test workers, two profiler runs)
# waits for the first, then finds the binary up to date.
mkdir -p "$BUILD_DIR"
exec 9>"$BUILD_DIR/.build.lock"
if command -v flock >/dev/null; then flock 9; fi

# Stamp = everything that decides the configuration. Rebuild when it
# changes or when any source is newer than the binary.
STAMP_TEXT="et=$ET_DIR cmake=$CM ninja=$NINJA type=$BUILD_TYPE et_version=$(cksum < "$ET_DIR/version.py" 2>/dev/null | cut -d' ' -f1)"
STAMP="$BUILD_DIR/.fbnet_build_stamp"
if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]]; then
  newer="$(find "$HERE/CMakeLists.txt" "$REPO/bench_runner" -newer "$BIN" -type f 2>/dev/null | head -n1)"
  if [[ -z "$newer" ]]; then
    echo "$BIN"
    exit 0
  fi
fi

# ------------------------------------------------------------ configure
mkdir -p "$BUILD_DIR"
if [[ -f "$STAMP" && "$(cat "$STAMP")" != "$STAMP_TEXT" ]]; then
  echo "build_host.sh: configuration changed, reconfiguring from scratch" >&2
  rm -rf "$BUILD_DIR/CMakeCache.txt" "$BUILD_DIR/CMakeFiles"
fi
if [[ -n "$NINJA" ]]; then
  GEN_ARGS=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$NINJA")
fi
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  "$CM" -S "$HERE" -B "$BUILD_DIR" ${GEN_ARGS[@]+"${GEN_ARGS[@]}"} \
    -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DFBNET_EXECUTORCH_MODE=wheel \
    -DEXECUTORCH_WHEEL_DIR="$ET_DIR" >&2
fi

# ---------------------------------------------------------------- build
JOBS="${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
"$CM" --build "$BUILD_DIR" --parallel "$JOBS" >&2
[[ -x "$BIN" ]] || die "build finished but $BIN is missing"
touch "$BIN"
printf '%s' "$STAMP_TEXT" > "$STAMP"
echo "$BIN"
