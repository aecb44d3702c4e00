"""Prompt flood against a fresh headless server (the long part of the fault suite, tests/test_fault_suite.py).

Starts ComfyUI (the default 2024 host, or COMFYUI_DIR) on the tiny models in a temporary folder, queues
``--prompts`` prompts as fast as the API takes them (good ones, and faults as tests/test_fault_suite.py sends
them: non-finite and out-of-range values, path and option injection), waits until the queue is empty, and
reports: how many were accepted, refused at queue time, failed at run time and succeeded; the server's
resident memory after the first good prompt and at the end; whether it still serves (one more good prompt,
same output as the first); partial files left. Exit status 1 if any check fails.

    .venv/bin/python tools/fault_flood.py [--prompts 200]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.comfy_server import ComfyServer, PromptRejected  # noqa: E402

FAULTS = [("8", {"frame_rate": math.nan}), ("8", {"loop_count": 10 ** 6}),
          ("8", {"filename_prefix": "../../flood_escape"}), ("8", {"filename_prefix": "clip\u202egpj.exe"}),
          ("3", {"motion_scale": math.nan}), ("3", {"motion_scale": -1.0}),
          ("2", {"model_name": "../../../etc/passwd"}),
          ("8", {"format": "video/h264-mp4", "codec_options": "x264-params=pass=1:stats=/tmp/flood.log"})]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    from tests.test_fault_suite import good_prompt
    from tests.test_video_support import decode_any

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200)
    args = ap.parse_args()
    problems = []
    with tempfile.TemporaryDirectory() as workdir, ComfyServer(workdir) as server:
        def output_of(history):
            (item,) = history["outputs"]["8"]["animatediff_preview"]
            return decode_any(os.path.join(server.output_dir, item["subfolder"], item["filename"]))

        first = output_of(server.run(good_prompt("flood_first")))
        rss_start = rss_mb(server.process.pid)
        counts = {"accepted": 0, "refused when queued": 0}
        start = time.time()
        for i in range(args.prompts):
            prompt = good_prompt(f"flood_{i}")
            prompt["6"]["inputs"]["seed"] = i
            if i % 2:
                node, change = FAULTS[(i // 2) % len(FAULTS)]
                prompt[node]["inputs"].update(change)
            try:
                server.submit(prompt)
                counts["accepted"] += 1
            except PromptRejected:
                counts["refused when queued"] += 1
        while server.get_json("/queue")["queue_running"] or server.get_json("/queue")["queue_pending"]:
            time.sleep(1)
        history = server.get_json("/history?max_items=100000")
        statuses = [h.get("status", {}).get("status_str") for h in history.values()]
        counts["succeeded"] = statuses.count("success") - 1  # the first good prompt
        counts["failed when run"] = statuses.count("error")
        rss_end = rss_mb(server.process.pid)
        last = output_of(server.run(good_prompt("flood_last")))
        if not (first == last).all():
            problems.append("the good prompt's output changed after the flood")
        partial = [os.path.join(b, f) for b, _, fs in os.walk(workdir) for f in fs if f.endswith(".partial")]
        if partial:
            problems.append(f"partial files left: {partial[:5]}")
        if os.path.exists(os.path.join(os.path.dirname(server.output_dir), "..", "flood_escape_00001.gif")):
            problems.append("a file was written outside the output folder")
        print(f"{args.prompts} prompts in {time.time() - start:.0f} s on {server.host_dir}: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        print(f"server RSS after the first prompt {rss_start:.0f} MB, after the flood {rss_end:.0f} MB "
              f"(x{rss_end / rss_start:.2f}); still serving, output unchanged: {not problems}")
    for problem in problems:
        print("PROBLEM:", problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
