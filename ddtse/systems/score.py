"""The conditional SGMSE+ baseline (spec §3-5): a time-conditional NCSN++ on [x_t, y] (4 real
channels) plus the speaker clue, trained by denoising score matching; predictor-corrector
sampling with 60 network calls.

Score convention (spec §3, checklist 6): SGMSE+'s NCSN++ has ``scale_by_sigma=True``, which
divides the network output by **t** (not sigma(t)), and ``ScoreModel.forward`` negates it, so
score = -NN([x_t, y], t, e) / t. Our NCSNpp backbone does neither (its docstring says so): both
are done here, in ``score``.

Config keys read here (besides the base's and SpectralDiffusionSystem's): ``sampler.{N, snr,
corrector_steps, seed}`` (defaults of ``extract_batch``).
"""
from __future__ import annotations

import torch

from ddtse.diffusion.samplers import pc_sample
from ddtse.errors import DdtseError
from ddtse.registry import SYSTEMS
from ddtse.systems.ddtse import SpectralDiffusionSystem


@SYSTEMS.register("sgmse")
class ScoreSystem(SpectralDiffusionSystem):
    """Conditional SGMSE+: s(x_t, y, t, e) = -NN([x_t, y], t, e) / t; loss mean_B 0.5 sum |sigma(t) s + z|^2."""

    expected_in_channels = 4
    expect_time_conditional = True
    sampler_option_specs = {
        "N": (int, 30, "reverse-diffusion (predictor) steps"),
        "snr": (float, 0.5, "Langevin corrector signal-to-noise ratio"),
        "corrector_steps": (int, 1, "corrector steps per predictor step (NFE = N (1 + corrector_steps))"),
        "seed": (int, 100, "sampling-noise seed (with item ids: per-item streams)"),
    }
    sampler_option_bounds = {"N": (1, None), "snr": (0.0, None), "corrector_steps": (0, None)}

    def score(self, net, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor, emb) -> torch.Tensor:
        """complex x_t, y (B, 1, F, N), t (B,) -> complex score (B, 1, F, N)."""
        out = self.run_backbone(net, torch.cat([x_t, y], dim=1), emb, t)
        if self._backbone(net).scale_by_t:  # imported from sgmse: the backbone divided by t already
            return -out
        return -out / t.to(out.real.dtype).reshape(-1, 1, 1, 1)

    def score_matching_loss(self, net, batch: dict, generator: torch.Generator | None = None):
        y, x0, mask, _ = self.prepare(batch)
        t = self.sde.sample_t(y.shape[0], generator=generator, device=y.device)
        x_t, z = self.sde.perturb(x0, y, t, generator)
        s = self.score(net, x_t, y, t, self.speaker_embedding(net, batch))
        sigma = self.sde.std(t).to(y.device).reshape(-1, 1, 1, 1)
        per_item = 0.5 * ((sigma * s + z).abs().pow(2) * mask).sum(dim=(1, 2, 3))
        return per_item.mean(), {}

    def training_loss(self, batch: dict):
        return self.score_matching_loss(self.model, batch)

    @torch.no_grad()
    def validation_loss(self, batch: dict, estimate=None):
        """Score-matching loss of the EMA network with fixed noise (the sampled estimate is not used)."""
        y = batch["mixture"]
        return self.score_matching_loss(self.inference_model(True), batch,
                                        torch.Generator(device=y.device).manual_seed(0))

    @torch.no_grad()
    def extract_batch(self, batch: dict, use_ema: bool = True, **opts):
        """Predictor-corrector sampling. Opts: N (30), snr (0.5), corrector_steps (1), seed (100);
        defaults come from the ``sampler:`` config section. Returns ((B, T), info), nfe = N (1 + corrector_steps)."""
        if opts.pop("initial_estimate", None) is not None:
            raise DdtseError("system 'sgmse' cannot refine an initial estimate (use a 'ddtse' checkpoint)")
        ids = opts.pop("ids", None)
        o = self.resolve_options(opts)
        net = self.inference_model(use_ema)
        y, _, _, scale = self.prepare(batch, with_target=False)
        emb = self.speaker_embedding(net, batch)  # once per call
        gen = self._noise_source(batch, y, int(o["seed"]), ids)

        def score_fn(x, t):
            return self.score(net, x, y, t, emb)

        x, nfe = pc_sample(score_fn, y, self.sde, N=int(o["N"]), snr=float(o["snr"]),
                           corrector_steps=int(o["corrector_steps"]), generator=gen)
        info = {"nfe": nfe, "sampler": "pc", "N": int(o["N"]), "snr": float(o["snr"]),
                "corrector_steps": int(o["corrector_steps"]), "seed": int(o["seed"])}
        return self.to_waveform(x, batch, scale), info
