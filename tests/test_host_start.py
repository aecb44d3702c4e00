"""The session's ComfyUI server started clean: no "IMPORT FAILED" in its start-up log, neither for this
pack nor for the host's own optional nodes (current ComfyUI's audio nodes need torchaudio, which
scripts/setup.sh installs with COMFYUI_DIR)."""

from __future__ import annotations


def test_no_import_failures_at_start(server):
    with open(server.log_path, errors="replace") as f:
        log = f.read()
    assert "Import times for custom nodes" in log or "custom_nodes" in log, log[-2000:]
    failed = [line.strip() for line in log.splitlines() if "IMPORT FAILED" in line]
    assert not failed, "\n".join(failed)
