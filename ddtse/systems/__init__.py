"""LightningModules that train extractors; each registers itself in SYSTEMS."""
from ddtse.systems import base  # noqa: F401
from ddtse.systems import discriminative  # noqa: F401
from ddtse.systems import ddtse  # noqa: F401
from ddtse.systems import score  # noqa: F401
from ddtse.systems import speaker_encoder  # noqa: F401
from ddtse.systems import flow  # noqa: F401
from ddtse.systems import mr_predictor  # noqa: F401
