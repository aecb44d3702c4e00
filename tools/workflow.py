"""Workflow files: UI format (what the frontend saves) to API format (what /prompt takes), checks of a
workflow against a server's /object_info, and edits by node and input name.

The conversion follows what the frontend's graphToPrompt does, driven by the server's /object_info:
widget values are matched to widget inputs in input order; seed-like widgets carry one extra
"control after generate" slot; links become ``[source_id, output_index]``; notes are dropped, muted
nodes left out and bypassed nodes bridged.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASSED = 2, 4
# Input flags after which the frontend adds an upload button (one more widgets_values entry); the last is this
# pack's own (web/video_upload.js adds its button for the video loaders in both frontends).
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "animatediff_video_upload")
FILE_NAME = re.compile(r"\.[A-Za-z0-9]{2,12}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# The example workflows. The UI-format files lie in workflows/, one of the folders current ComfyUI reads
# a custom node's templates from (its files, not its subfolders: app/custom_node_manager.py); their
# API-format twins (<name>_api.json, for POST /prompt and tools/run_workflow.py) lie in workflows/api/,
# so that the template browser offers each example once.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "workflows")
API_EXAMPLES = os.path.join(EXAMPLES, "api")


def example_path(file_name: str) -> str:
    """The path of an example workflow file by its name: ``txt2vid.json`` (UI format, workflows/) or
    ``txt2vid_api.json`` (API format, workflows/api/)."""
    folder = API_EXAMPLES if file_name.endswith("_api.json") else EXAMPLES
    return os.path.join(folder, file_name)


class WorkflowError(ValueError):
    pass


def is_api_format(data: dict) -> bool:
    return isinstance(data, dict) and "nodes" not in data and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def is_ui_format(data: dict) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and isinstance(data.get("links", []), list)


def load(path: str) -> dict:
    """A workflow file (either format). Raises WorkflowError when it is neither."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise WorkflowError(f"cannot read workflow {path}: {e}") from None
    if not (is_api_format(data) or is_ui_format(data)):
        raise WorkflowError(f"{path} is not a ComfyUI workflow: expected the UI format (a 'nodes' list, as the "
                            f"frontend saves) or the API format ({{id: {{class_type, inputs}}}})")
    return data


# ----------------------------------------------------------------------------------------------
# Inputs as /object_info declares them

def input_spec(info: dict, name: str):
    """(kind, options) of input ``name`` of a node class, or None. kind is a type name, or a list for a combo."""
    for section in ("required", "optional"):
        spec = (info.get("input") or {}).get(section, {}).get(name)
        if spec is not None:
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if kind == "COMBO" and isinstance(options.get("options"), list):  # V3 / newer combo spelling
                kind = options["options"]
            return kind, options
    return None


def input_names(info: dict) -> list[str]:
    return [n for s in ("required", "optional") for n in (info.get("input") or {}).get(s, {})]


def _widget_inputs(info: dict):
    """(name, spec) of each input that the frontend shows as a widget, in the frontend's order."""
    order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            kind, options = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            if (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput"):
                yield name, kind, options


def _takes_control_slot(name: str, kind, options: dict) -> bool:
    return bool(options.get("control_after_generate")) or (kind == "INT" and name in ("seed", "noise_seed"))


def widget_slots(info: dict) -> list[tuple[str, int]]:
    """(input name, index in widgets_values) of each widget input, as the frontend saves them."""
    slots, position = [], 0
    for name, kind, options in _widget_inputs(info):
        slots.append((name, position))
        position += 2 if _takes_control_slot(name, kind, options) else 1
    return slots


def _expected_widget_count(info: dict) -> tuple[int, int]:
    """(fewest, most) entries a node's widgets_values may have: optional widgets may be missing at the end
    (a file saved before they existed), an upload button adds one."""
    required = set((info.get("input") or {}).get("required", {}))
    most = 0
    fewest = 0
    for name, kind, options in _widget_inputs(info):
        width = 2 if _takes_control_slot(name, kind, options) else 1
        most += width
        if name in required:
            fewest = most
    if any(options.get(flag) for _, _, options in _widget_inputs(info) for flag in UPLOAD_OPTIONS):
        most += 1
    return fewest, most


# ----------------------------------------------------------------------------------------------
# UI format to API format

def ui_to_api(workflow: dict, object_info: dict) -> dict:
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {l[0]: l for l in workflow.get("links", [])}

    def source_of(link_id, seen=()):
        """Follow a link back through reroutes and bypassed nodes to a real output."""
        _, origin, slot, _, _, kind = links[link_id][:6]
        node = nodes[origin]
        if node["type"] == "Reroute" or node.get("mode") == MODE_BYPASSED:
            if origin in seen:
                raise WorkflowError(f"link cycle through node {origin}")
            for inp in node.get("inputs", []):
                if inp.get("link") is not None and (node["type"] == "Reroute" or inp.get("type") == kind):
                    return source_of(inp["link"], seen + (origin,))
            return None
        return [str(origin), slot]

    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        info = object_info.get(kind)
        if info is None:
            raise WorkflowError(f"node {node['id']} is a '{kind}', which this ComfyUI does not have "
                                f"(a custom node pack is missing or failed to import)")
        inputs = {}
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):  # some packs save widgets by name
            values = None
        linked = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        position = 0
        for name, wkind, options in _widget_inputs(info):
            if values is None:
                value = node["widgets_values"].get(name)
            elif position < len(values):
                value = values[position]
                position += 1
                if _takes_control_slot(name, wkind, options):
                    position += 1
            else:
                continue
            if name not in linked:
                inputs[name] = copy.deepcopy(value)
        for name, link_id in linked.items():
            source = source_of(link_id)
            if source is not None:
                inputs[name] = source
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return prompt


def to_api(workflow: dict, object_info: dict) -> dict:
    """The API prompt of a workflow in either format (a copy)."""
    if is_api_format(workflow):
        return copy.deepcopy(workflow)
    return ui_to_api(workflow, object_info)


def titles(workflow: dict) -> dict[str, str]:
    """{node id: title} of the nodes that have one (UI "title", API "_meta.title")."""
    if is_api_format(workflow):
        return {k: v["_meta"]["title"] for k, v in workflow.items() if (v.get("_meta") or {}).get("title")}
    return {str(n["id"]): n["title"] for n in workflow["nodes"] if n.get("title")}


# ----------------------------------------------------------------------------------------------
# Edits: ``node.input=value``

def find_node(prompt: dict, ref: str, node_titles: dict | None = None) -> str:
    """The id of the node that ``ref`` names: its id, else its title, else its class_type (each must be
    unambiguous). Raises WorkflowError listing the candidates."""
    if ref in prompt:
        return ref
    node_titles = node_titles or {}
    by_title = [i for i, t in node_titles.items() if i in prompt and t == ref]
    if not by_title:
        by_title = [i for i, t in node_titles.items() if i in prompt and t.lower() == ref.lower()]
    by_class = [i for i, n in prompt.items() if n["class_type"] == ref]
    for found, what in ((by_title, "title"), (by_class, "type")):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise WorkflowError(f"'{ref}' is ambiguous: nodes {', '.join(sorted(found, key=_id_key))} have that "
                                f"{what}; use a node id")
    def describe(i, n):
        title = f' "{node_titles[i]}"' if i in node_titles else ""
        return f"{i} ({n['class_type']}{title})"
    listing = ", ".join(describe(i, n) for i, n in sorted(prompt.items(), key=lambda kv: _id_key(kv[0])))
    raise WorkflowError(f"no node '{ref}' in the workflow; its nodes are: {listing}")


def _id_key(node_id: str):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


def parse_value(text: str, kind):
    """A command-line value as the input's type wants it ("8" for an INT, "true" for a BOOLEAN, ...)."""
    if kind == "INT":
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value.is_integer():
            raise WorkflowError(f"'{text}' is not a whole number")
        return int(value)
    if kind == "FLOAT":
        try:
            return float(text)
        except ValueError:
            raise WorkflowError(f"'{text}' is not a number") from None
    if kind == "BOOLEAN":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise WorkflowError(f"'{text}' is not true or false")
    if kind in ("STRING",) or isinstance(kind, list):
        return text
    try:  # a type we do not know: JSON if it parses, else the text
        return json.loads(text)
    except ValueError:
        return text


def parse_assignment(text: str) -> tuple[str, str, str]:
    """"node.input=value" -> (node, input, value). The node part may hold dots and '=' (a title); the
    first '=' that follows "<node>.<input name>" splits, so values may hold '=' too."""
    for position, char in enumerate(text):
        if char != "=":
            continue
        node, dot, name = text[:position].rpartition(".")
        if dot and node.strip() and IDENTIFIER.match(name.strip()):
            return node.strip(), name.strip(), text[position + 1:]
    raise WorkflowError(f"'{text}' is not of the form node.input=value (node: id, title or type)")


def set_input(prompt: dict, object_info: dict, node_ref: str, name: str, raw, node_titles=None,
              workflow: dict | None = None) -> tuple[str, object]:
    """Set input ``name`` of the node ``node_ref`` names, in the API prompt and, when given, in the UI
    workflow too (so that the workflow embedded in the outputs is the one that ran). ``raw`` is a
    string (parsed for the input's type) or a value. Returns (node id, value)."""
    node_id = find_node(prompt, node_ref, node_titles)
    node = prompt[node_id]
    info = object_info.get(node["class_type"])
    if info is None:
        raise WorkflowError(f"node {node_id} is a '{node['class_type']}', which this ComfyUI does not have")
    spec = input_spec(info, name)
    if spec is None:
        raise WorkflowError(f"node {node_id} ({node['class_type']}) has no input '{name}'; its inputs are: "
                            f"{', '.join(input_names(info))}")
    kind, _ = spec
    value = parse_value(raw, kind) if isinstance(raw, str) else raw
    if isinstance(node["inputs"].get(name), list) and not isinstance(value, list):
        raise WorkflowError(f"input '{name}' of node {node_id} is connected to another node; set the value "
                            f"on that node instead")
    node["inputs"][name] = value
    if workflow is not None and not is_api_format(workflow):
        set_widget_value(workflow, object_info, node_id, name, value)
    elif workflow is not None and node_id in workflow:
        workflow[node_id]["inputs"][name] = copy.deepcopy(value)
    return node_id, value


def set_widget_value(workflow: dict, object_info: dict, node_id, name: str, value) -> bool:
    """Write ``value`` into the UI node's widgets_values slot for input ``name``; False if it has none."""
    node = next((n for n in workflow["nodes"] if str(n["id"]) == str(node_id)), None)
    if node is None or node["type"] not in object_info:
        return False
    values = node.get("widgets_values")
    if isinstance(values, dict):
        values[name] = copy.deepcopy(value)
        return True
    for slot_name, index in widget_slots(object_info[node["type"]]):
        if slot_name == name:
            values = node.setdefault("widgets_values", [])
            if index >= len(values):
                return False
            values[index] = copy.deepcopy(value)
            return True
    return False


# ----------------------------------------------------------------------------------------------
# Checks against a server's /object_info

def looks_like_file(value) -> bool:
    return isinstance(value, str) and bool(FILE_NAME.search(value))


def check_value(kind, options: dict, value, where: str, allow_absent_files: bool = True) -> list[str]:
    """Problems with one widget value, as the server would see them."""
    if isinstance(kind, list):
        if value in kind:
            return []
        if allow_absent_files and looks_like_file(value):
            return []  # a model or input file the user provides (the list is what this server has)
        shown = ", ".join(map(str, kind[:12])) + (" ..." if len(kind) > 12 else "")
        return [f"{where}: '{value}' is not one of the choices [{shown}]"]
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {value!r} is not a whole number"]
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return [f"{where}: {value!r} is not a number"]
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return [f"{where}: {value!r} is not true or false"]
        return []
    elif kind == "STRING":
        return [] if isinstance(value, str) else [f"{where}: {value!r} is not text"]
    else:
        return []
    problems = []
    if options.get("min") is not None and value < options["min"]:
        problems.append(f"{where}: {value} is below the minimum {options['min']}")
    if options.get("max") is not None and value > options["max"]:
        problems.append(f"{where}: {value} is above the maximum {options['max']}")
    return problems


def _output_types(info: dict) -> list:
    return list(info.get("output") or [])


def _types_match(out_type, in_kind) -> bool:
    if isinstance(in_kind, list):
        in_kind = "COMBO"
    if isinstance(out_type, list):
        out_type = "COMBO"
    if "*" in (out_type, in_kind):
        return True
    return bool(set(str(out_type).split(",")) & set(str(in_kind).split(",")))


def check_api(prompt: dict, object_info: dict, allow_absent_files: bool = True) -> list[str]:
    """Every problem of an API prompt against /object_info: unknown node types and inputs, missing
    required inputs, links to absent nodes or outputs or of the wrong type, widget values outside
    their type, range or choices (file names the server does not have are allowed by default)."""
    problems = []
    for node_id, node in prompt.items():
        kind = node.get("class_type")
        info = object_info.get(kind)
        where = f"node {node_id} ({kind})"
        if info is None:
            problems.append(f"{where}: this ComfyUI has no node type '{kind}'")
            continue
        inputs = node.get("inputs", {})
        for name in (info.get("input") or {}).get("required", {}):
            if name not in inputs:
                problems.append(f"{where}: required input '{name}' is missing")
        for name, value in inputs.items():
            spec = input_spec(info, name)
            if spec is None:
                problems.append(f"{where}: no input '{name}' (it has {', '.join(input_names(info))})")
                continue
            in_kind, options = spec
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
                source = prompt.get(value[0])
                if source is None:
                    problems.append(f"{where}: input '{name}' links to node {value[0]}, which is not in the workflow")
                    continue
                source_info = object_info.get(source.get("class_type"))
                if source_info is None:
                    continue
                outputs = _output_types(source_info)
                if not 0 <= value[1] < len(outputs):
                    problems.append(f"{where}: input '{name}' links to output {value[1]} of node {value[0]} "
                                    f"({source['class_type']}), which has {len(outputs)} outputs")
                elif not _types_match(outputs[value[1]], in_kind):
                    problems.append(f"{where}: input '{name}' ({in_kind}) is linked to a {outputs[value[1]]} output")
            else:
                problems += check_value(in_kind, options, value, f"{where}.{name}", allow_absent_files)
    return problems


def check_ui(workflow: dict, object_info: dict, allow_absent_files: bool = True) -> list[str]:
    """Every problem of a UI workflow against /object_info: unknown node types, input slots that the
    node does not have, links that do not match the nodes' slots and types, widget values that do not
    fit their inputs (count, type, range, choices), and what its API form would be refused for."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {}
    for link in workflow.get("links", []):
        link_id, origin, origin_slot, target, target_slot, kind = link[:6]
        links[link_id] = link
        if origin not in nodes or target not in nodes:
            problems.append(f"link {link_id} joins node {origin} to node {target}, which are not both in the workflow")
            continue
        outputs = nodes[origin].get("outputs") or []
        inputs = nodes[target].get("inputs") or []
        if not 0 <= origin_slot < len(outputs) or link_id not in (outputs[origin_slot].get("links") or []):
            problems.append(f"link {link_id}: output {origin_slot} of node {origin} does not list it")
        if not 0 <= target_slot < len(inputs) or inputs[target_slot].get("link") != link_id:
            problems.append(f"link {link_id}: input {target_slot} of node {target} does not name it")
    for node in workflow["nodes"]:
        kind = node["type"]
        where = f"node {node['id']} ({kind})"
        for slot in node.get("inputs") or []:
            if slot.get("link") is not None and slot["link"] not in links:
                problems.append(f"{where}: input '{slot['name']}' names link {slot['link']}, which does not exist")
        if kind in FRONTEND_ONLY:
            continue
        info = object_info.get(kind)
        if info is None:
            problems.append(f"{where}: this ComfyUI has no node type '{kind}'")
            continue
        names = input_names(info)
        for slot in node.get("inputs") or []:
            if slot["name"] not in names:
                problems.append(f"{where}: no input '{slot['name']}' (it has {', '.join(names)})")
                continue
            in_kind, _ = input_spec(info, slot["name"])
            if slot.get("link") in links and not _types_match(links[slot["link"]][5], in_kind):
                problems.append(f"{where}: input '{slot['name']}' ({in_kind}) receives a {links[slot['link']][5]} link")
        outputs = _output_types(info)
        for index, slot in enumerate(node.get("outputs") or []):
            if index >= len(outputs):
                problems.append(f"{where}: output {index} '{slot.get('name')}' does not exist (it has {len(outputs)})")
            elif not _types_match(outputs[index], slot.get("type")):
                problems.append(f"{where}: output {index} is {outputs[index]}, the file says {slot.get('type')}")
        values = node.get("widgets_values")
        if isinstance(values, list):
            fewest, most = _expected_widget_count(info)
            if not fewest <= len(values) <= most:
                problems.append(f"{where}: {len(values)} widget values, the node has "
                                f"{fewest if fewest == most else f'{fewest} to {most}'}")
            for name, index in widget_slots(info):
                if index < len(values):
                    in_kind, options = input_spec(info, name)
                    problems += check_value(in_kind, options, values[index], f"{where}.{name}", allow_absent_files)
    if not problems:
        problems += check_api(ui_to_api(workflow, object_info), object_info, allow_absent_files)
    return problems


def check(workflow: dict, object_info: dict, allow_absent_files: bool = True) -> list[str]:
    if is_api_format(workflow):
        return check_api(workflow, object_info, allow_absent_files)
    return check_ui(workflow, object_info, allow_absent_files)
