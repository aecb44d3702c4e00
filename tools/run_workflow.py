"""Run a ComfyUI workflow headless: submit it, show progress, download the outputs.

    .venv/bin/python tools/run_workflow.py WORKFLOW.json [node.input=value ...]
        [--server URL] [--input [node.input=]FILE ...] [--out DIR]

Options and ``node.input=value`` overrides may come in any order, before or after each other.

WORKFLOW.json is in either format: as the frontend saves it (UI format, converted here with the
server's /object_info, seed "control after generate" slots included) or the API format.
``node.input=value`` sets an input before the run: the node by id, by title or by type (class_type),
each only when unambiguous; the value is read as the input's type (INT, FLOAT, BOOLEAN, text, a
choice). The workflow embedded in the outputs carries these changes.
``--input FILE`` uploads FILE into the server's input folder (POST /upload/image, which takes any file
type) and puts its name into the node input that takes such files (a video into Load Video (frames)'s
``video``, an image into LoadImage's ``image``); ``--input node.input=FILE`` names the input.
Without ``--server`` the local host (the one scripts/setup.sh prepared, or COMFYUI_DIR) is started
on a free loopback port for this run and stopped afterwards.

Exit status: 0 done (the paths of the downloaded files are printed, one a line); 1 a node failed while
running, or the server could not be reached or started; 2 bad command line or workflow; 3 the server
rejected the prompt (its validation message is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import workflow as wf  # noqa: E402
from tools.comfy_server import ComfyClient, ComfyServer, ExecutionFailed, PromptRejected  # noqa: E402

VIDEO_EXT = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".gif", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv", ".ts")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
AUDIO_EXT = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".opus")
# Inputs that take a file of the input folder, by media kind: the names the frontend's upload widgets
# use, and our own loader.
FILE_INPUTS = {"video": ("video", "file"), "image": ("image",), "audio": ("audio",)}
UPLOAD_FLAGS = {"video": "video_upload", "image": "image_upload", "audio": "audio_upload"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


class UsageError(Exception):
    pass


def media_kind(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    for kind, exts in (("video", VIDEO_EXT), ("image", IMAGE_EXT), ("audio", AUDIO_EXT)):
        if ext in exts:
            return kind
    return None


def file_input_candidates(prompt: dict, object_info: dict, kind: str | None) -> list[tuple[str, str]]:
    """(node id, input name) of the combo inputs that take an input-folder file of this media kind."""
    found = []
    for node_id in sorted(prompt, key=wf._id_key):
        info = object_info.get(prompt[node_id]["class_type"]) or {}
        for name in wf.input_names(info):
            spec = wf.input_spec(info, name)
            if spec is None or not isinstance(spec[0], list):
                continue
            options = spec[1]
            kinds = [kind] if kind else list(FILE_INPUTS)
            if any(name in FILE_INPUTS[k] or options.get(UPLOAD_FLAGS[k]) for k in kinds):
                if not isinstance(prompt[node_id]["inputs"].get(name), list):  # not fed by a link
                    found.append((node_id, name))
    return found


class ProgressDisplay:
    """One status line on stderr: the node running, and a bar for the sampler steps."""

    def __init__(self, prompt: dict, titles: dict, stream=sys.stderr, width: int = 30):
        self.prompt, self.titles, self.stream, self.width = prompt, titles, stream, width
        self.tty = stream.isatty()
        self.node = None
        self.last_shown = None

    def name(self, node_id) -> str:
        node_id = str(node_id)
        kind = self.prompt.get(node_id, {}).get("class_type", "?")
        title = self.titles.get(node_id)
        return f"{node_id} {title} ({kind})" if title else f"{node_id} {kind}"

    def event(self, kind: str, data: dict):
        if kind == "executing" and data.get("node") is not None:
            self.end_line()
            self.node = data["node"]
            self.stream.write(f"[run] {self.name(self.node)}\n")
            self.stream.flush()
        elif kind == "execution_cached" and data.get("nodes"):
            self.stream.write(f"[run] cached: {', '.join(map(str, data['nodes']))}\n")

    def progress(self, value: int, total: int, node=None):
        total = max(int(total), 1)
        filled = int(self.width * value / total)
        line = f"[run]   [{'#' * filled}{'.' * (self.width - filled)}] {value}/{total}"
        if self.tty:
            self.stream.write("\r" + line)
            if value >= total:
                self.stream.write("\n")
        else:  # a log: one line per quarter
            quarter = (4 * value) // total
            if quarter != self.last_shown:
                self.last_shown = quarter
                self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self):
        self.last_shown = None


def unused_path(path: str) -> str:
    """``path``, or ``name_2.ext``, ``name_3.ext``, ... when a file of that name is there already: a
    host started for one run numbers its outputs from 1 again, and an earlier run's files must stay."""
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(path):
        n += 1
        path = f"{stem}_{n}{ext}"
    return path


def save_new(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` or the first unused name after it; returns the path written."""
    while True:
        path = unused_path(path)
        try:
            with open(path, "xb") as f:
                f.write(data)
            return path
        except FileExistsError:  # another run took that name in between
            continue


def download_outputs(client, history: dict, out_dir: str) -> list[str]:
    """Every file the output nodes report (any ``ui`` list of {filename, subfolder, type}), saved under
    ``out_dir`` with its subfolder (never over an existing file: see unused_path); returns the paths."""
    saved, seen = [], set()
    for node_id, ui in (history.get("outputs") or {}).items():
        for items in ui.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if not (isinstance(item, dict) and item.get("filename")):
                    continue
                key = (item.get("type", "output"), item.get("subfolder", ""), item["filename"])
                if key in seen:
                    continue
                seen.add(key)
                data = client.fetch_output(item)
                folder = os.path.join(out_dir, *[p for p in item.get("subfolder", "").split("/") if p not in ("", "..", ".")])
                os.makedirs(folder, exist_ok=True)
                path = save_new(os.path.join(folder, os.path.basename(item["filename"])), data)
                saved.append(path)
    return saved


def prepare(workflow: dict, object_info: dict, assignments: list[str], inputs: list[str], client) -> tuple:
    """(API prompt, UI workflow to embed or None, titles) with the inputs uploaded and the overrides set."""
    try:
        prompt = wf.to_api(workflow, object_info)
    except wf.WorkflowError as e:
        raise UsageError(str(e)) from None
    embed = None if wf.is_api_format(workflow) else json.loads(json.dumps(workflow))
    titles = wf.titles(workflow)
    used = set()
    for spec in inputs:
        target = None
        path = spec
        if not os.path.exists(spec) and "=" in spec:
            key, _, path = spec.partition("=")
            node, _, name = key.rpartition(".")
            if not node or not name:
                raise UsageError(f"--input {spec}: expected FILE or node.input=FILE")
            target = (node, name)
        if not os.path.isfile(path):
            raise UsageError(f"--input {spec}: no such file: {path}")
        if target is None:
            kind = media_kind(path)
            candidates = [c for c in file_input_candidates(prompt, object_info, kind) if c not in used]
            if not candidates:
                raise UsageError(f"--input {path}: no node of this workflow takes {kind or 'such'} files from the "
                                 f"input folder; name the input: --input NODE.INPUT={path}")
            target = candidates[0]
        uploaded = client.upload(path)
        node_id, _ = _set(prompt, object_info, target[0], target[1], uploaded, titles, embed)
        used.add((node_id, target[1]))
        print(f"[run] uploaded {path} as '{uploaded}' -> node {node_id}.{target[1]}", file=sys.stderr)
    for text in assignments:
        try:
            node, name, value = wf.parse_assignment(text)
        except wf.WorkflowError as e:
            raise UsageError(str(e)) from None
        _set(prompt, object_info, node, name, value, titles, embed)
    return prompt, embed, titles


def _set(prompt, object_info, node, name, value, titles, embed):
    try:
        return wf.set_input(prompt, object_info, node, name, value, titles, embed)
    except wf.WorkflowError as e:
        raise UsageError(f"{node}.{name}: {e}") from None


def list_inputs(prompt: dict, titles: dict, object_info: dict, stream=sys.stdout):
    for node_id in sorted(prompt, key=wf._id_key):
        node = prompt[node_id]
        title = f' "{titles[node_id]}"' if node_id in titles else ""
        print(f"{node_id} {node['class_type']}{title}", file=stream)
        for name, value in node["inputs"].items():
            shown = f"<- node {value[0]} output {value[1]}" if isinstance(value, list) else json.dumps(value)
            print(f"    {name} = {shown}", file=stream)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="run_workflow.py", description=__doc__.split("\n\n")[0],
                                 epilog="Options and node.input=value overrides may come in any order. "
                                        "Exit status: 0 done; 1 a node failed or no server; 2 bad command line or "
                                        "workflow; 3 the server rejected the prompt.")
    ap.add_argument("workflow", help="workflow file, UI or API format")
    ap.add_argument("assignments", nargs="*", metavar="node.input=value",
                    help="set an input (node by id, title or type)")
    ap.add_argument("--server", help="URL of a running ComfyUI (default: start the local host for this run)")
    ap.add_argument("--input", action="append", default=[], metavar="[node.input=]FILE",
                    help="upload FILE to the server's input folder and use it (repeatable)")
    ap.add_argument("--out", default="workflow_output", help="folder for the downloaded outputs (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default %(default)s)")
    ap.add_argument("--models", help="models folder for the local host (default: .cache/models, the tiny models)")
    ap.add_argument("--list-inputs", action="store_true", help="print the nodes and their inputs, then exit")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, options and overrides in any order (``--out DIR`` before or after ``KSampler.steps=4``)."""
    return build_parser().parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    try:
        workflow = wf.load(args.workflow)
    except wf.WorkflowError as e:
        print(f"[run] {e}", file=sys.stderr)
        return EXIT_USAGE

    for text in args.assignments:  # before any server is started or reached
        try:
            wf.parse_assignment(text)
        except wf.WorkflowError as e:
            print(f"[run] {e}", file=sys.stderr)
            return EXIT_USAGE
    for spec in args.input:
        path = spec if os.path.exists(spec) else spec.partition("=")[2] if "=" in spec else spec
        if not os.path.isfile(path):
            print(f"[run] --input {spec}: no such file: {path}", file=sys.stderr)
            return EXIT_USAGE

    server = None
    workdir = None
    try:
        if args.server:
            client = ComfyClient(args.server)
            try:
                object_info = client.get_json("/object_info")
            except (urllib.error.URLError, OSError, ValueError) as e:
                print(f"[run] cannot reach ComfyUI at {args.server}: {e}", file=sys.stderr)
                return EXIT_FAILED
        else:
            os.makedirs(os.path.join(ROOT, ".cache"), exist_ok=True)
            workdir = tempfile.mkdtemp(prefix="run-server-", dir=os.path.join(ROOT, ".cache"))
            print("[run] starting the local ComfyUI headless ...", file=sys.stderr)
            try:
                server = ComfyServer(workdir, models_dir=args.models).start()
            except (RuntimeError, OSError) as e:
                print(f"[run] could not start ComfyUI: {e}", file=sys.stderr)
                return EXIT_FAILED
            print(f"[run] ComfyUI is up at {server.url}", file=sys.stderr)
            client, object_info = server, server.object_info

        try:
            prompt, embed, titles = prepare(workflow, object_info, args.assignments, args.input, client)
        except UsageError as e:
            print(f"[run] {e}", file=sys.stderr)
            return EXIT_USAGE
        except RuntimeError as e:  # an upload the server refused
            print(f"[run] {e}", file=sys.stderr)
            return EXIT_FAILED
        if args.list_inputs:
            list_inputs(prompt, titles, object_info)
            return EXIT_OK

        display = ProgressDisplay(prompt, titles)
        try:
            history = client.run(prompt, embed, on_progress=display.progress, timeout=args.timeout,
                                 on_event=display.event)
        except PromptRejected as e:
            print(f"[run] the server rejected the workflow:\n{e}", file=sys.stderr)
            return EXIT_REJECTED
        except (ExecutionFailed, TimeoutError) as e:
            print(f"[run] failed: {e}", file=sys.stderr)
            return EXIT_FAILED
        for warning in client.warnings:
            print(f"[run] warning: the server left out: {warning}", file=sys.stderr)
        saved = download_outputs(client, history, args.out)
        if not saved:
            print("[run] the workflow ran but produced no output files", file=sys.stderr)
        for path in saved:
            print(path)
        return EXIT_OK
    finally:
        if server is not None:
            server.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
