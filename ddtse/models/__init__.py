"""Registered nn.Modules (importing a module registers it)."""
from ddtse.models import dptnet  # noqa: F401
from ddtse.models import tasnet  # noqa: F401
from ddtse.models import ncsnpp  # noqa: F401
from ddtse.models import speaker  # noqa: F401
from ddtse.models import mr_predictor  # noqa: F401
