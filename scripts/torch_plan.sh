# Which torch build scripts/setup.sh installs (sourced by it; tests/test_setup_script.py calls
# torch_plan with its inputs faked). Inputs: TORCH_VARIANT (auto | cpu | cuda, default auto),
# TORCH_INDEX_URL (the CPU-only wheel index, default PyTorch's), TORCH_VERSION (for the messages);
# NVIDIA_DRIVER_PROC and NVIDIA_SMI only to fake the driver check.

DEFAULT_CPU_INDEX="https://download.pytorch.org/whl/cpu"

if ! declare -F say >/dev/null; then
  say() { printf '[setup] %s\n' "$*" >&2; }
fi

has_nvidia_driver() {
  [ -e "${NVIDIA_DRIVER_PROC:-/proc/driver/nvidia/version}" ] && return 0
  local smi="${NVIDIA_SMI:-nvidia-smi}"
  command -v "$smi" >/dev/null 2>&1 && "$smi" -L >/dev/null 2>&1
}

# Whether a package index answers for torch: a local folder, or an http(s) index within 15 s.
index_reachable() {
  python3 - "$1" <<'EOF'
import os, sys, urllib.parse, urllib.request
url = sys.argv[1].rstrip("/") + "/torch/"
parsed = urllib.parse.urlparse(url)
if parsed.scheme == "file":
    sys.exit(0 if os.path.isdir(urllib.request.url2pathname(parsed.path)) else 1)
try:
    with urllib.request.urlopen(url, timeout=15) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# The torch plan, one word on stdout: "cuda" (PyPI's build: a driver is there), "cpu" (the CPU-only
# build from TORCH_INDEX_URL) or "pypi" (no driver, no CPU index within reach: PyPI's build). Says why.
torch_plan() {
  local variant="${TORCH_VARIANT:-auto}" index="${TORCH_INDEX_URL:-$DEFAULT_CPU_INDEX}"
  if [ "$variant" = auto ]; then
    if has_nvidia_driver; then variant=cuda; else variant=cpu; fi
  fi
  case "$variant" in
    cuda) say "NVIDIA driver found (or TORCH_VARIANT=cuda): torch $TORCH_VERSION from PyPI, the CUDA build"
          echo cuda ;;
    cpu)  if [ "$(uname -m)" != x86_64 ]; then
            say "no NVIDIA driver: torch $TORCH_VERSION from PyPI (on $(uname -m) that is the CPU build)"
            echo pypi
          elif index_reachable "$index"; then
            say "no NVIDIA driver: torch $TORCH_VERSION, the CPU-only build, from $index"
            echo cpu
          else
            say "no NVIDIA driver, but the CPU-only torch index $index cannot be reached: installing PyPI's"
            say "torch $TORCH_VERSION, a CUDA build (several GB) that runs on the CPU as well. For the small CPU"
            say "build, point TORCH_INDEX_URL at a reachable copy of PyTorch's CPU wheel index and run this again."
            echo pypi
          fi ;;
    *)    say "TORCH_VARIANT=$variant: expected auto, cpu or cuda"; exit 1 ;;
  esac
}
