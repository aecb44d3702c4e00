"""Motion modules: checkpoint reading, format detection and the temporal-layer math. Pure torch."""

from .checkpoint import CheckpointError, read_tensors
from .formats import BETA_SCHEDULES, BetaSchedule, MotionFormat, detect_format, expected_keys
from .model import MotionModel, build_modules, load_motion_model
from .temporal import FrameLimitError, MotionModule, MotionModuleSet, TemporalTransformer, group_norm, sinusoidal_table

__all__ = [
    "BETA_SCHEDULES", "BetaSchedule", "CheckpointError", "FrameLimitError", "MotionFormat", "MotionModel",
    "MotionModule", "MotionModuleSet", "TemporalTransformer", "build_modules", "detect_format",
    "expected_keys", "group_norm", "load_motion_model", "read_tensors", "sinusoidal_table",
]
