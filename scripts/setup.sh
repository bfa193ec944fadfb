#!/usr/bin/env bash
# Sets up the project venv (pinned ROS 2 Jazzy wheels, vision_msgs built when missing, the package)
# and runs one job in it.
#
#   scripts/setup.sh demo [ARGS]   runtime only (no torch), then the node pipeline on bundled samples
#   scripts/setup.sh test [ARGS]   runtime + training + test tools, then ruff and pytest
#   scripts/setup.sh train [ARGS]  runtime + training tools, then `fusion-perception train ARGS`
#   scripts/setup.sh teacher [ARGS] runtime + training tools, then `fusion-perception teacher ARGS`
#                                  (default `convert`: the NanoDet-g teacher's ONNX, docs/TEACHER.md)
#   scripts/setup.sh env           set up the runtime only
#
# Re-running is cheap: each requirement set is installed once per content hash.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FUSION_PERCEPTION_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
job=${1:-env}
[ $# -gt 0 ] && shift

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || log "warning: the pinned ROS 2 wheels are cp311; $("$PYTHON" --version) may not find them"

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

install_set() {  # install a requirements file once per content hash
  local req=$1 stamp
  stamp="$VENV/.stamp-$(basename "$req" .txt)-$(sha256sum "$req" | cut -c1-16)"
  [ -e "$stamp" ] && return 0
  log "installing $(basename "$req")"
  "${PIP[@]}" -r "$req"
  touch "$stamp"
}

install_set "$ROOT/requirements/runtime.txt"

if ! "$VENV/bin/python" -c 'import vision_msgs.msg' 2>/dev/null; then
  log "vision_msgs is not importable: building it into the venv (about a minute)"
  install_set "$ROOT/requirements/interfaces.txt"
  "$VENV/bin/python" "$ROOT/scripts/patch_ros_cmake_paths.py" "$VENV" >/dev/null
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  cmake -S "$ROOT/interfaces/vision_msgs" -B "$build" -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" >"$build/configure.log" 2>&1 \
    || { cat "$build/configure.log" >&2; exit 1; }
  cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1 || { tail -50 "$build/build.log" >&2; exit 1; }
  cmake --install "$build" >/dev/null
  "$VENV/bin/python" -c 'import vision_msgs.msg' || { log "vision_msgs built but does not import"; exit 1; }
fi

case "$job" in
  test|train|teacher) install_set "$ROOT/requirements/train.txt" ;;
esac
[ "$job" = test ] && install_set "$ROOT/requirements/test.txt"

pkg_stamp="$VENV/.stamp-package-$(cat "$ROOT/setup.py" "$ROOT/setup.cfg" | sha256sum | cut -c1-16)"
if [ ! -e "$pkg_stamp" ]; then
  log "installing fusion_perception (editable)"
  "${PIP[@]}" --no-deps -e "$ROOT"
  touch "$pkg_stamp"
fi

cd "$ROOT"
case "$job" in
  env) log "ready: $VENV" ;;
  demo) exec "$VENV/bin/fusion-perception" demo "$@" ;;
  train) exec "$VENV/bin/fusion-perception" train "$@" ;;
  teacher) exec "$VENV/bin/fusion-perception" teacher "${@:-convert}" ;;
  test)
    "$VENV/bin/ruff" check .
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *) log "unknown job '$job' (demo, test, train, teacher, env)"; exit 2 ;;
esac
