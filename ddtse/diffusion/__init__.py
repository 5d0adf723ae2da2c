"""Diffusion machinery: the OUVE SDE and the DDTSE / refinement / predictor-corrector samplers."""
from ddtse.diffusion.sde import OUVESDE, SDES, build_sde, loss_weight, randn_like
from ddtse.diffusion.samplers import (
    ddtse_refine, ddtse_sample, ddtse_schedule, pc_sample, refinement_schedule, renoise_and_predict,
)

__all__ = [
    "OUVESDE", "SDES", "build_sde", "loss_weight", "randn_like",
    "ddtse_refine", "ddtse_sample", "ddtse_schedule", "pc_sample", "refinement_schedule", "renoise_and_predict",
]
