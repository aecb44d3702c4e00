"""tools/demo.py without a server: what its progress bars are called."""

from tools.demo import progress_label, tiny_prompt
from tools.workflow import example_path
import json


def test_each_progress_bar_says_what_it_counts():
    prompt = tiny_prompt(json.load(open(example_path("txt2vid_api.json"))))
    by_type = {node["class_type"]: node_id for node_id, node in prompt.items()}
    assert progress_label(prompt, by_type["KSampler"]) == "sampling"
    assert progress_label(prompt, by_type["VideoCombine"]) == "encoding"  # the second bar: the encoder
    assert progress_label(prompt, by_type["VAEDecode"]) == "decoding"
    assert progress_label(prompt, None) == "working"
