"""Start a ComfyUI host headless on a free loopback port, or talk to one already running (ComfyClient):
upload input files, submit prompts, follow progress, fetch outputs, stop it.

Used by the demo, the headless runner (tools/run_workflow.py) and the end-to-end tests. Standard library plus aiohttp (which every ComfyUI
install has) for the websocket.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_NODES = ("LoadMotionModule", "ApplyMotionModule", "VideoCombine", "LoadVideoFrames")


class PromptRejected(RuntimeError):
    """The server refused a prompt; the message is the server's own validation report."""


class ExecutionFailed(RuntimeError):
    """A node failed while the prompt ran; ``details`` is the server's execution_error message (node_id,
    node_type, exception_type, exception_message, traceback, ...), empty for an interruption."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


def default_host_dir() -> str:
    if os.environ.get("COMFYUI_DIR"):
        return os.path.abspath(os.environ["COMFYUI_DIR"])
    with open(os.path.join(ROOT, ".cache", "host-dir")) as f:
        return f.read().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_has_flag(host_dir: str, flag: str) -> bool:
    """Whether the host's command line knows ``flag`` (read from its comfy/cli_args.py)."""
    try:
        with open(os.path.join(host_dir, "comfy", "cli_args.py"), encoding="utf-8") as f:
            return f'"{flag}"' in f.read()
    except OSError:
        return False


def write_model_paths_yaml(path: str, models_dir: str):
    """An extra_model_paths.yaml naming our model folders by absolute path (both hosts accept that)."""
    lines = ["animatediff_tiny_models:"]
    for folder in ("checkpoints", "animatediff_models", "animatediff_motion_lora", "loras", "vae"):
        lines.append(f"    {folder}: {os.path.join(models_dir, folder)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class ComfyClient:
    """HTTP and websocket client of a running ComfyUI (either host), by its base URL."""

    def __init__(self, url: str, client_id: str | None = None):
        self._url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.warnings: list[str] = []

    @property
    def url(self) -> str:
        return self._url

    @property
    def ws_url(self) -> str:
        base = self.url
        base = "wss://" + base[len("https://"):] if base.startswith("https://") else "ws://" + base.split("://", 1)[-1]
        return f"{base}/ws?clientId={self.client_id}"

    def get_json(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.loads(r.read())

    def get_bytes(self, route: str) -> bytes:
        with urllib.request.urlopen(self.url + route, timeout=60) as r:
            return r.read()

    def submit(self, prompt: dict, workflow: dict | None = None) -> str:
        """Queue a prompt; returns its id. Raises PromptRejected with the server's validation report.
        Outputs the server leaves out (current ComfyUI runs the valid ones) are kept in ``warnings``."""
        body = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        request = urllib.request.Request(self.url + "/prompt", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise PromptRejected(describe_rejection(e.read())) from None
        self.warnings = describe_node_errors(answer.get("node_errors") or {})
        return answer["prompt_id"]

    def upload(self, path: str, name: str | None = None, subfolder: str = "", overwrite: bool = False) -> str:
        """Put a file into the server's input folder through POST /upload/image (both hosts store any
        file type there). Returns the name to use in the workflow, as the server reports it (it may
        rename the file to avoid replacing another one; with a subfolder: "subfolder/name")."""
        name = name or os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read()
        boundary = uuid.uuid4().hex
        fields = [("type", "input"), ("subfolder", subfolder)] + ([("overwrite", "true")] if overwrite else [])
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields)
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "/upload/image", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"the server refused the upload of {path}: HTTP {e.code} "
                               f"{e.read().decode(errors='replace')[:500]}") from None
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def run(self, prompt: dict, workflow: dict | None = None, on_progress=None, timeout: float = 600.0,
            on_event=None) -> dict:
        """Submit and wait; returns the history entry (with ``outputs``). Raises on failure.
        ``on_progress(value, max, node)`` gets the sampler steps; ``on_event(type, data)`` every other
        message of this prompt (executing, executed, execution_cached, ...)."""
        return asyncio.run(self._run(prompt, workflow, on_progress, timeout, on_event))

    async def _run(self, prompt, workflow, on_progress, timeout, on_event=None):
        import aiohttp
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.ws_url) as ws:
                prompt_id = self.submit(prompt, workflow)
                deadline = time.time() + timeout
                while True:
                    remaining = deadline - time.time()
                    if remaining <= 0:
                        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
                    msg = await ws.receive(timeout=remaining)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            raise ExecutionFailed("websocket closed before the prompt finished")
                        continue
                    event = json.loads(msg.data)
                    data = event.get("data", {})
                    if data.get("prompt_id") not in (None, prompt_id):
                        continue
                    if event["type"] == "progress" and on_progress:
                        on_progress(data["value"], data["max"], data.get("node"))
                    elif event["type"] == "execution_error":
                        raise ExecutionFailed(f"{data.get('node_type')} (node {data.get('node_id')}) failed: "
                                              f"{data.get('exception_type')}: {data.get('exception_message')}",
                                              data)
                    elif event["type"] == "execution_interrupted":
                        raise ExecutionFailed("execution was interrupted")
                    elif event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                        break
                    elif on_event and event["type"] != "progress" and data.get("prompt_id") == prompt_id:
                        on_event(event["type"], data)
        history = self.get_json(f"/history/{prompt_id}")[prompt_id]
        return history

    def fetch_output(self, item: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                        "type": item.get("type", "output")})
        return self.get_bytes("/view?" + query)


class ComfyServer(ComfyClient):
    """A ComfyUI host started headless on a free loopback port (a ComfyClient once started)."""

    def __init__(self, workdir: str, host_dir: str | None = None, models_dir: str | None = None,
                 python: str = sys.executable, extra_args=(), cpu: bool = True):
        self.host_dir = host_dir or default_host_dir()
        self.workdir = os.path.abspath(workdir)
        self.models_dir = models_dir or os.path.join(ROOT, ".cache", "models")
        self.output_dir = os.path.join(self.workdir, "output")
        self.temp_dir = os.path.join(self.workdir, "temp")
        self.input_dir = os.path.join(self.workdir, "input")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.python = python
        self.extra_args = list(extra_args)
        self.cpu = cpu  # False: the host picks its device (a GPU where there is one), as a user's server does
        self.port = None
        self.process = None
        self.user_dir = None
        self.client_id = uuid.uuid4().hex
        self.warnings = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 180.0):
        for d in (self.output_dir, self.temp_dir, self.input_dir):
            os.makedirs(d, exist_ok=True)
        yaml_path = os.path.join(self.workdir, "extra_model_paths.yaml")
        write_model_paths_yaml(yaml_path, self.models_dir)
        self.port = free_port()
        cmd = [self.python, "main.py", *(["--cpu"] if self.cpu else []), "--listen", "127.0.0.1", "--port", str(self.port),
               "--output-directory", self.output_dir, "--temp-directory", self.temp_dir,
               "--input-directory", self.input_dir, "--extra-model-paths-config", yaml_path,
               "--preview-method", "none"]
        if host_has_flag(self.host_dir, "--user-directory"):
            # Frontend settings and saved workflows of this run stay in the work folder, not in the host's.
            self.user_dir = os.path.join(self.workdir, "user")
            os.makedirs(self.user_dir, exist_ok=True)
            cmd += ["--user-directory", self.user_dir]
        cmd += self.extra_args
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=self.host_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.object_info = self.get_json("/object_info")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")
        missing = [n for n in PACK_NODES if n not in self.object_info]
        if missing:
            log = self.log_tail(200)
            self.stop()
            raise RuntimeError(f"the pack did not load into ComfyUI (missing nodes {missing}):\n{log}")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def describe_rejection(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
    parts = [data.get("error", {}).get("message", "prompt rejected")]
    for node_id, info in (data.get("node_errors") or {}).items():
        for err in info.get("errors", []):
            parts.append(f"node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "\n".join(parts)


def describe_node_errors(node_errors: dict) -> list[str]:
    return [f"node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}"
            for node_id, info in node_errors.items() for err in info.get("errors", [])]
