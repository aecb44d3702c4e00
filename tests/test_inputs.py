"""nodes/inputs.py: a node checks its inputs against its own INPUT_TYPES, when the prompt is queued (as
both hosts call VALIDATE_INPUTS: getfullargspec, then only the named inputs that are present) and
before its FUNCTION runs. Pure: fake node classes; the file is loaded on its own (no ComfyUI import)."""

from __future__ import annotations

import importlib.util
import inspect
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("animatediff_node_inputs", os.path.join(ROOT, "nodes", "inputs.py"))
inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inputs)


@inputs.validated("Fake Node")
class Fake:
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"rate": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 240.0}),
                             "count": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "name": ("STRING", {"default": "x"}),
                             "mode": (["a", "b"],),
                             "flag": ("BOOLEAN", {"default": False}),
                             "model": ("MODEL",)},
                "optional": {"cutoff": ("FLOAT", {"default": 0.25, "min": 0.01, "max": 1.0}),
                             "free": ("FLOAT", {"default": 0.0}),
                             "kind": ("COMBO", {"options": ["x", "y"]})},
                "hidden": {"prompt": "PROMPT"}}

    def __init__(self):
        self.calls = 0

    def run(self, rate, count, name, mode, flag, model, cutoff=0.25, free=0.0, kind="x"):
        self.calls += 1
        return (rate,)


GOOD = dict(rate=8.0, count=1, name="x", mode="a", flag=False, model=object())


@pytest.mark.parametrize("change,message", [
    ({"rate": float("nan")}, "Fake Node: rate is nan; expected a finite number from 0.1 to 240"),
    ({"rate": float("inf")}, "Fake Node: rate is inf; expected a finite number from 0.1 to 240"),
    ({"rate": 0.0}, "Fake Node: rate is 0.0; expected a finite number from 0.1 to 240"),
    ({"rate": "8"}, "Fake Node: rate is '8'; expected a finite number from 0.1 to 240"),
    ({"count": 1000}, "Fake Node: count is 1000; expected a whole number from 1 to 10"),
    ({"count": 2.5}, "Fake Node: count is 2.5; expected a whole number from 1 to 10"),
    ({"count": True}, "Fake Node: count is True; expected a whole number from 1 to 10"),
    ({"name": 7}, "Fake Node: name is 7; expected text"),
    ({"mode": "c"}, "Fake Node: mode is 'c'; expected one of a, b"),
    ({"flag": "yes"}, "Fake Node: flag is 'yes'; expected true or false"),
    ({"cutoff": 0.0}, "Fake Node: cutoff is 0.0; expected a finite number from 0.01 to 1"),
    ({"free": -math.inf}, "Fake Node: free is -inf; expected a finite number"),
    ({"free": 10 ** 400}, "Fake Node: free is 1000"),
    ({"kind": "z"}, "Fake Node: kind is 'z'; expected one of x, y"),
])
def test_bad_values_are_refused_before_the_function_runs_and_when_queued(change, message):
    node = Fake()
    with pytest.raises(inputs.InputError) as info:
        node.run(**{**GOOD, **change})
    assert str(info.value).startswith(message)
    assert node.calls == 0
    named = inspect.getfullargspec(Fake.VALIDATE_INPUTS).args  # what the hosts pass when queued
    queued = Fake.VALIDATE_INPUTS(**{k: v for k, v in {**GOOD, **change}.items() if k in named})
    if set(change) <= set(named):
        assert queued.startswith(message)
    else:  # a required INT, STRING, BOOLEAN or choice: the host's own check, when queued
        assert queued is True


def test_every_problem_is_listed_and_positional_calls_are_checked():
    with pytest.raises(inputs.InputError) as info:
        Fake().run(float("nan"), 0, "x", "a", False, None)
    assert str(info.value).splitlines() == ["Fake Node: rate is nan; expected a finite number from 0.1 to 240",
                                            "Fake Node: count is 0; expected a whole number from 1 to 10"]


def test_good_values_pass_and_links_are_left_alone():
    node = Fake()
    assert node.run(**GOOD, cutoff=1.0, free=-1e300, kind="y") == (8.0,) and node.calls == 1
    assert Fake.VALIDATE_INPUTS(rate=8.0, count=10, name="", mode="b", flag=True) is True
    assert Fake.VALIDATE_INPUTS(rate=None, count=None) is True  # fed by links: checked when the node runs
    assert Fake.VALIDATE_INPUTS() is True


def test_the_hosts_leave_floats_and_optional_widgets_to_the_check():
    """Both hosts read VALIDATE_INPUTS's parameters with getfullargspec and leave those inputs to it:
    FLOATs (neither host refuses NaN) and optional widgets (the 2024 host checks none); required INT,
    STRING, BOOLEAN and choices keep the host's own check."""
    spec = inspect.getfullargspec(Fake.VALIDATE_INPUTS)
    assert spec.args == ["cls", "rate", "cutoff", "free", "kind"]
    assert spec.varkw is None  # (current ComfyUI would then skip its own checks of every input)


def test_a_nodes_own_validate_inputs_runs_after_the_check():
    @inputs.validated("Own")
    class Own:
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"n": ("INT", {"min": 0, "max": 5}), "path": ("STRING",), "clip": ("IMAGE",)}}

        @classmethod
        def VALIDATE_INPUTS(cls, path, clip=None):
            return True if path != "bad" else "Own: path is bad"

        def run(self, n, path, clip=None):
            return (n,)

    assert inspect.getfullargspec(Own.VALIDATE_INPUTS).args == ["cls", "path", "clip"]
    assert Own.VALIDATE_INPUTS(path="ok") is True
    assert Own.VALIDATE_INPUTS(path="bad") == "Own: path is bad"
    with pytest.raises(inputs.InputError, match="^Own: n is 9; expected a whole number from 0 to 5$"):
        Own().run(9, "ok")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, 10.5, "1", True, None])
def test_check_number_for_nodes_that_check_their_own_numbers(value):
    with pytest.raises(inputs.InputError, match=r"^Node: scale is .*; expected a finite number from 0 to 10 \(why\)$"):
        inputs.check_number("Node", "scale", value, 0.0, 10.0, what="why")
    assert inputs.check_number("Node", "scale", 10, 0.0, 10.0) == 10
