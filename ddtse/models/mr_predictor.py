"""AD-FlowTSE's mixing-ratio predictor (spec flow_tse.md §1.4): one shared ECAPA-TDNN (the speaker
encoder's code, ddtse/models/speaker.py) embeds the mixture and the enrollment; an MLP on the two
embeddings gives tau_hat in (0, 1). The log-mel front-end is mean-normalised per utterance, so
tau_hat hardly depends on the input gain."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ddtse.errors import DdtseError
from ddtse.registry import MODELS

DEFAULT_ENCODER = {"name": "ecapa_tdnn", "emb_dim": 192, "channels": 512}


@MODELS.register("mr_predictor")
class MixingRatioPredictor(nn.Module):
    """``forward(mixture (B, T), enrollment (B, Te), lengths (B,) | None, enrollment_lengths (B,) | None)
    -> tau_hat (B,)`` in (0, 1): sigmoid(MLP([e(mixture); e(enrollment)] / sqrt(D))).

    ``encoder``: an ``ecapa_tdnn`` config (its ``sample_rate`` is set from the data); ``hidden``:
    the MLP width (default the embedding size)."""

    def __init__(self, encoder: dict | None = None, hidden: int | None = None, sample_rate: int | None = None):
        super().__init__()
        cfg = dict(DEFAULT_ENCODER if encoder is None else encoder)
        if cfg.get("name", "ecapa_tdnn") != "ecapa_tdnn":
            raise DdtseError(f"mr_predictor: the encoder must be an 'ecapa_tdnn' config, got {cfg.get('name')!r}")
        cfg["name"] = "ecapa_tdnn"
        if sample_rate is not None:
            cfg.setdefault("sample_rate", int(sample_rate))
        self.encoder = MODELS.build(cfg)
        dim = int(self.encoder.output_dim)
        hidden = int(hidden or dim)
        self.head = nn.Sequential(nn.Linear(2 * dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, mixture: torch.Tensor, enrollment: torch.Tensor, lengths: torch.Tensor | None = None,
                enrollment_lengths: torch.Tensor | None = None) -> torch.Tensor:
        both = torch.cat([self.encoder(mixture, lengths), self.encoder(enrollment, enrollment_lengths)], dim=-1)
        return torch.sigmoid(self.head(both * self.scale))[:, 0]
