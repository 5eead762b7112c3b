#!/usr/bin/env bash
# Fetches the C++ headers of ExecuTorch v1.5.1 (the version the app links through Swift
# Package Manager) into ios_app/third-party/executorch-headers/, for the shared benchmark
# core: the prebuilt xcframeworks export the module/tensor API headers but not those of
# the runtime internals and ETDump that bench_runner/bench_core.cpp includes.
# Idempotent: returns at once when the headers are there. Needs git and network access.
set -euo pipefail

VERSION="${EXECUTORCH_VERSION:-1.5.1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$HERE/third-party/executorch-headers"
STAMP="$DEST/.version"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
  echo "ExecuTorch $VERSION headers already in $DEST"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
git clone --quiet --depth 1 --branch "v$VERSION" --filter=blob:none --sparse \
  https://github.com/pytorch/executorch.git "$TMP/executorch"
# Only the folders whose headers bench_core.cpp reaches (directly or transitively).
git -C "$TMP/executorch" sparse-checkout set \
  runtime extension/data_loader extension/memory_allocator devtools/etdump

rm -rf "$DEST"
mkdir -p "$DEST/executorch"
(cd "$TMP/executorch" && find runtime extension devtools \( -name '*.h' -o -name '*.hpp' \) \
  -not -path '*/test/*' -print0 | xargs -0 -I{} sh -c 'mkdir -p "$0/$(dirname "{}")" && cp "{}" "$0/{}"' "$DEST/executorch")
echo "$VERSION" > "$STAMP"
echo "ExecuTorch $VERSION headers -> $DEST ($(find "$DEST" -name '*.h' | wc -l | tr -d ' ') files)"
