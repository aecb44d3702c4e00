"""Motion modules: checkpoint reading, format detection, motion LoRAs and the temporal-layer math. Pure torch."""

from .checkpoint import CheckpointError, read_layout, read_tensors
from .formats import (BETA_SCHEDULES, GROUPNORM_AS_TRAINED, GROUPNORM_MODES, BetaSchedule, MotionFormat,
                      detect_format, expected_keys)
from .lora import MotionLoRA, apply_motion_lora, load_motion_lora, motion_lora_from_tensors
from .model import MotionModel, build_modules, load_motion_model, motion_model_from_tensors
from .temporal import FrameLimitError, MotionModule, MotionModuleSet, TemporalTransformer, group_norm, sinusoidal_table

__all__ = [
    "BETA_SCHEDULES", "BetaSchedule", "CheckpointError", "FrameLimitError", "GROUPNORM_AS_TRAINED",
    "GROUPNORM_MODES", "MotionFormat", "MotionLoRA", "MotionModel", "MotionModule", "MotionModuleSet",
    "TemporalTransformer", "apply_motion_lora", "build_modules", "detect_format", "expected_keys", "group_norm",
    "load_motion_lora", "load_motion_model", "motion_lora_from_tensors", "motion_model_from_tensors",
    "read_layout", "read_tensors", "sinusoidal_table",
]
