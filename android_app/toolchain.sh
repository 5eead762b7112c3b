# Sourced by build_host.sh and build_android.sh (which define REPO and die()):
#   PY: the Python to use ($PYTHON, else the repo's .venv, else python3), as an absolute path
#       so it stays valid after the scripts change directory;
#   CM: a CMake >= 3.28 (the executorch CMake package needs it; Debian's 3.25 is too old),
#       from $CMAKE, the venv of $PY, then PATH.
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
  PY="$REPO/.venv/bin/python"
else
  PY="$(command -v python3 || true)"
fi
[[ -n "$PY" ]] && command -v "$PY" >/dev/null 2>&1 || die "no Python found (set PYTHON)"
[[ "$PY" == */* ]] || PY="$(command -v "$PY")"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"

version_ok() {  # $1 = cmake binary; true when >= 3.28
  local v
  v="$("$1" --version 2>/dev/null | head -n1 | sed -n 's/^cmake version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')"
  [[ -n "$v" ]] || return 1
  set -- $v
  (( $1 > 3 || ($1 == 3 && $2 >= 28) ))
}
CM=""
for cand in "${CMAKE:-}" "$(dirname "$PY")/cmake" "$(command -v cmake || true)"; do
  if [[ -n "$cand" && -x "$cand" ]] && version_ok "$cand"; then CM="$cand"; break; fi
done
[[ -n "$CM" ]] || die "need CMake >= 3.28 (the executorch CMake package requires it): $(dirname "$PY")/pip install cmake ninja"
