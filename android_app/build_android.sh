#!/usr/bin/env bash
# Cross-compiles fbnet_bench for Android arm64-v8a.
#
#   1. Builds and installs ExecuTorch from a source checkout of v1.5.1 with
#      CMake preset android-arm64-v8a plus XNNPACK, the event tracer and the
#      devtools (ETDump), as static libraries.
#   2. Builds this runner against that install (static ExecuTorch and libc++;
#      only bionic libc/libm/libdl/liblog are dynamic).
#
# Required environment:
#   ANDROID_NDK      Android NDK root (r26 or newer recommended), the folder
#                    holding build/cmake/android.toolchain.cmake
#   EXECUTORCH_SRC   ExecuTorch source checkout at v1.5.1 with submodules:
#                      git clone -b v1.5.1 --recurse-submodules https://github.com/pytorch/executorch
# Optional:
#   PYTHON           Python used by ExecuTorch's code generators; needs torch
#                    (default: <repo>/.venv/bin/python, else python3)
#   CMAKE            cmake >= 3.28 (default: next to PYTHON, else on PATH)
#   ANDROID_API      minimum API level (default 28)
#   FBNET_ANDROID_BUILD_DIR  output folder (default: android_app/build-android)
#   JOBS             parallel jobs (default: number of CPUs)
#   SKIP_EXECUTORCH_BUILD=1  reuse an existing ExecuTorch install in the output folder
#
# The last line on stdout is the path of the arm64 binary. Push and run it:
#   adb push <binary> /data/local/tmp/fbnet_bench
#   adb shell /data/local/tmp/fbnet_bench --help
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="${FBNET_ANDROID_BUILD_DIR:-$HERE/build-android}"
ABI=arm64-v8a
API="${ANDROID_API:-28}"
ET_BUILD="$OUT/executorch-build"
ET_INSTALL="$OUT/executorch-install"
RUNNER_BUILD="$OUT/runner"

die() { echo "build_android.sh: error: $*" >&2; exit 1; }
log() { echo "build_android.sh: $*" >&2; }

# ------------------------------------------------------------ environment
if [[ -z "${ANDROID_NDK:-}" ]]; then
  die "ANDROID_NDK is not set. Point it at an Android NDK (r26+), e.g.
  export ANDROID_NDK=\$HOME/Android/Sdk/ndk/27.2.12479018"
fi
TOOLCHAIN="$ANDROID_NDK/build/cmake/android.toolchain.cmake"
[[ -f "$TOOLCHAIN" ]] || die "ANDROID_NDK=$ANDROID_NDK has no build/cmake/android.toolchain.cmake; is it an NDK root?"

if [[ -z "${EXECUTORCH_SRC:-}" ]]; then
  die "EXECUTORCH_SRC is not set. Check out ExecuTorch v1.5.1 with its submodules:
  git clone -b v1.5.1 --recurse-submodules https://github.com/pytorch/executorch
  export EXECUTORCH_SRC=\$PWD/executorch"
fi
[[ -f "$EXECUTORCH_SRC/CMakeLists.txt" && -d "$EXECUTORCH_SRC/runtime/executor" ]] \
  || die "EXECUTORCH_SRC=$EXECUTORCH_SRC is not an ExecuTorch source checkout"
[[ -f "$EXECUTORCH_SRC/backends/xnnpack/third-party/XNNPACK/CMakeLists.txt" ]] \
  || die "ExecuTorch submodules are missing in $EXECUTORCH_SRC; run: git -C \"$EXECUTORCH_SRC\" submodule update --init --recursive"

ET_VERSION="unknown"
if [[ -f "$EXECUTORCH_SRC/version.txt" ]]; then
  ET_VERSION="$(tr -d '[:space:]' < "$EXECUTORCH_SRC/version.txt")"
fi
case "$ET_VERSION" in
  1.5.1*) ;;
  *) log "warning: EXECUTORCH_SRC is version '$ET_VERSION'; this runner is written and tested against 1.5.1 (the host wheel)" ;;
esac
ET_VERSION="${ET_VERSION%%[a+]*}"   # "1.5.1a0" / "1.5.1+x" -> "1.5.1"

source "$HERE/toolchain.sh"  # PY and CM
"$PY" -c 'import torchgen, yaml' 2>/dev/null \
  || die "$PY cannot import torchgen and yaml (install torch==2.13.0 and pyyaml into it)"


GEN_ARGS=()
for cand in "$(dirname "$PY")/ninja" "$(command -v ninja || true)"; do
  if [[ -n "$cand" && -x "$cand" ]]; then GEN_ARGS=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$cand"); break; fi
done
JOBS="${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 4)}"
export ANDROID_NDK  # the ExecuTorch preset reads it from the environment

ANDROID_ARGS=(
  "-DCMAKE_TOOLCHAIN_FILE=$TOOLCHAIN"
  "-DANDROID_ABI=$ABI"
  "-DANDROID_PLATFORM=android-$API"
  "-DANDROID_STL=c++_static"
  "-DCMAKE_BUILD_TYPE=Release"
)

# ------------------------------------------------- 1. ExecuTorch (static)
if [[ "${SKIP_EXECUTORCH_BUILD:-0}" != "1" || ! -d "$ET_INSTALL/lib" ]]; then
  PRESET_ARGS=()
  if [[ -f "$EXECUTORCH_SRC/CMakePresets.json" ]] && grep -q '"android-arm64-v8a"' "$EXECUTORCH_SRC/CMakePresets.json"; then
    PRESET_ARGS=(--preset android-arm64-v8a)
  elif [[ -f "$EXECUTORCH_SRC/tools/cmake/preset/android.cmake" ]]; then
    log "warning: no android-arm64-v8a preset in $EXECUTORCH_SRC/CMakePresets.json; using tools/cmake/preset/android.cmake"
    PRESET_ARGS=("-DEXECUTORCH_BUILD_PRESET_FILE=$EXECUTORCH_SRC/tools/cmake/preset/android.cmake")
  else
    log "warning: no Android preset found; configuring with explicit options only"
  fi
  log "configuring ExecuTorch ($ET_VERSION) in $ET_BUILD"
  # Run from the source folder: CMake reads CMakePresets.json from the
  # current directory. Options after the preset override it: everything the
  # runner does not need (JNI, LLM, training) is switched off.
  (
    cd "$EXECUTORCH_SRC"
    "$CM" ${PRESET_ARGS[@]+"${PRESET_ARGS[@]}"} -S "$EXECUTORCH_SRC" -B "$ET_BUILD" ${GEN_ARGS[@]+"${GEN_ARGS[@]}"} \
      "${ANDROID_ARGS[@]}" \
      "-DCMAKE_INSTALL_PREFIX=$ET_INSTALL" \
      "-DPYTHON_EXECUTABLE=$PY" \
      -DBUILD_SHARED_LIBS=OFF \
      -DEXECUTORCH_BUILD_XNNPACK=ON \
      -DEXECUTORCH_ENABLE_EVENT_TRACER=ON \
      -DEXECUTORCH_BUILD_DEVTOOLS=ON \
      -DEXECUTORCH_BUILD_EXTENSION_DATA_LOADER=ON \
      -DEXECUTORCH_BUILD_EXTENSION_MODULE=ON \
      -DEXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR=ON \
      -DEXECUTORCH_BUILD_EXTENSION_NAMED_DATA_MAP=ON \
      -DEXECUTORCH_BUILD_EXTENSION_TENSOR=ON \
      -DEXECUTORCH_BUILD_KERNELS_OPTIMIZED=ON \
      -DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON \
      -DEXECUTORCH_BUILD_EXECUTOR_RUNNER=OFF \
      -DEXECUTORCH_BUILD_ANDROID_JNI=OFF \
      -DEXECUTORCH_BUILD_EXTENSION_LLM=OFF \
      -DEXECUTORCH_BUILD_EXTENSION_LLM_RUNNER=OFF \
      -DEXECUTORCH_BUILD_KERNELS_LLM=OFF \
      -DEXECUTORCH_BUILD_EXTENSION_TRAINING=OFF \
      -DEXECUTORCH_BUILD_EXTENSION_IMAGE=OFF \
      -DEXECUTORCH_ENABLE_LOGGING=ON \
      >&2
  )
  log "building and installing ExecuTorch into $ET_INSTALL (this takes a while)"
  "$CM" --build "$ET_BUILD" --target install --parallel "$JOBS" >&2
else
  log "SKIP_EXECUTORCH_BUILD=1: reusing $ET_INSTALL"
fi
[[ -d "$ET_INSTALL/lib" && -d "$ET_INSTALL/include/executorch" ]] \
  || die "ExecuTorch install at $ET_INSTALL is incomplete (no lib/ or include/executorch)"

# ---------------------------------------------------------- 2. the runner
log "building fbnet_bench in $RUNNER_BUILD"
"$CM" -S "$HERE" -B "$RUNNER_BUILD" ${GEN_ARGS[@]+"${GEN_ARGS[@]}"} \
  "${ANDROID_ARGS[@]}" \
  -DFBNET_EXECUTORCH_MODE=install \
  "-DEXECUTORCH_INSTALL_DIR=$ET_INSTALL" \
  "-DFBNET_EXECUTORCH_VERSION=$ET_VERSION" \
  >&2
"$CM" --build "$RUNNER_BUILD" --parallel "$JOBS" >&2

BIN="$RUNNER_BUILD/fbnet_bench"
[[ -x "$BIN" ]] || die "build finished but $BIN is missing"
if command -v file >/dev/null 2>&1; then file "$BIN" >&2; fi
echo "$BIN"
