"""How much memory VideoCombine's encoders use beyond the input frames (not a timed test).

For each format, a child process builds an IMAGE batch (default 1,000 frames of 512x512, float32:
3.1 GB), then encodes it while a thread samples the process's resident memory every 2 ms. The extra
peak (highest RSS during the encode minus RSS just before it) is printed in MB and as a ratio to the
size of ONE input frame (512*512*3 float32 = 3 MiB). Frames stream to the encoder, so the ratio stays
a small constant whatever the frame count; an encoder that held every frame would show a ratio near the
frame count (or a quarter of it, for uint8 copies).

    .venv/bin/python benchmarks/video_memory.py                      # every format, 1000 frames
    .venv/bin/python benchmarks/video_memory.py --frames 200 --formats image/webp video/h264-mp4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import json, os, sys, threading, time
    sys.path.insert(0, {root!r})
    import torch
    from video import ImageFrames, encode

    frames, size, fmt, out = {frames}, {size}, {fmt!r}, {out!r}
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    # A smooth moving pattern (encoders behave as on real footage, unlike noise), built frame by frame.
    y = torch.linspace(0, 1, size).view(size, 1).expand(size, size)
    x = torch.linspace(0, 1, size).view(1, size).expand(size, size)
    images = torch.empty((frames, size, size, 3), dtype=torch.float32)
    for i in range(frames):
        t = i / max(frames, 1)
        images[i, ..., 0] = (x + t) % 1.0
        images[i, ..., 1] = y
        images[i, ..., 2] = 0.5 + 0.5 * torch.sin(6.28 * (x + y + 2 * t))

    peak = [0]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)
    before = rss()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.time()
    result = encode(ImageFrames(images), out, fmt, 8.0)
    seconds = time.time() - start
    stop.set(); thread.join()
    peak[0] = max(peak[0], rss())
    file_bytes = (sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out)) if os.path.isdir(out)
                  else os.path.getsize(out))
    print(json.dumps(dict(format=fmt, frames=result.frames, input_bytes=images.numel() * 4, before=before,
                          extra=peak[0] - before, seconds=seconds, file_bytes=file_bytes)))
""")


def run(fmt: str, frames: int, size: int, folder: str) -> dict:
    sys.path.insert(0, ROOT)
    from video import FORMATS
    spec = FORMATS[fmt]
    out = os.path.join(folder, fmt.replace("/", "_") + (f".{spec.extension}" if spec.extension else ""))
    script = CHILD.format(root=ROOT, frames=frames, size=size, fmt=fmt, out=out)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{fmt}: the child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    sys.path.insert(0, ROOT)
    from video import FORMATS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--formats", nargs="*", default=list(FORMATS))
    args = parser.parse_args()
    frame_bytes = args.size * args.size * 3 * 4
    print(f"{args.frames} frames of {args.size}x{args.size}, input {args.frames * frame_bytes / 2**30:.2f} GiB "
          f"(one frame {frame_bytes / 2**20:.1f} MiB as float32)")
    print(f"{'format':22s} {'seconds':>8s} {'file MB':>8s} {'extra peak MB':>14s} {'ratio to 1 frame':>17s}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for fmt in args.formats:
            r = run(fmt, args.frames, args.size, folder)
            ratio = r["extra"] / frame_bytes
            worst = max(worst, ratio)
            print(f"{fmt:22s} {r['seconds']:8.1f} {r['file_bytes'] / 1e6:8.1f} {r['extra'] / 2**20:14.1f} "
                  f"{ratio:17.1f}", flush=True)
    print(f"largest extra peak: {worst:.1f} frames' worth ({worst / args.frames:.4f} of the input)")


if __name__ == "__main__":
    main()
