"""Workflow files: UI format (what the frontend saves) to API format (what /prompt takes).

The conversion follows what the frontend's graphToPrompt does, driven by the server's /object_info:
widget values are matched to widget inputs in input order; seed-like widgets carry one extra
"control after generate" slot; links become ``[source_id, output_index]``; notes are dropped, muted
nodes left out and bypassed nodes bridged.
"""

from __future__ import annotations

import copy

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASSED = 2, 4


class WorkflowError(ValueError):
    pass


def is_api_format(data: dict) -> bool:
    return isinstance(data, dict) and "nodes" not in data and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


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
