#!/usr/bin/env python
"""Record the fidelity fixtures of tests/assets/reference/ from checkouts of the reference code.

    python tools/reference/record_fixtures.py --ddtse_repo PATH --sgmse_repo PATH [--out DIR]

``--ddtse_repo``: vivian556123/slt2024-ddtse at branch ``code``; ``--sgmse_repo``: sp-uhh/sgmse.
For each, it builds a tiny random-weight reference network (the authors' own classes, imported
from the checkout), gives it perturbed EMA weights (torch_ema), saves it in the reference
Lightning checkpoint layout (``state_dict`` under ``dnn.*``, ``ema``, ``hyper_parameters`` as a
Lightning ``AttributeDict`` with the pickled class reference ``data_module_cls``), and records
inputs and the reference's outputs: the network (raw and EMA weights), the OUVE SDE, and the
reference sampler (the authors' DDTSE loop of ``ConditionalDDTSEModel.enhance``; sgmse's
predictor-corrector ``get_pc_sampler``) driven by recorded noise (``torch.randn_like`` is
replaced by draws from a list that is saved with the fixture).

This is test tooling, not project code: it runs the reference on CPU only, and so installs into
``sys.modules``, before importing the reference, a pure-torch ``upfirdn2d`` (the reference
compiles CUDA ops at import) and inert stand-ins for packages the network classes import but do
not use (diffusers, wespeakerruntime, librosa, ...). It needs ``torch_ema`` (e.g. ``pip install
--target /tmp/refsite torch-ema``; put that folder on PYTHONPATH), never in the project's venv.
Nothing of the reference code is written to the output folder.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "assets" / "reference"

#: the tiny networks: F = image_size = 32 bins, 16 frames, two levels, attention at F = 16
SHAPE = dict(batch=2, bins=32, frames=16)
TINY = dict(nf=4, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), image_size=32)
#: SDE options written to the sgmse fixture's hyper_parameters (not the defaults: the import must read them)
SGMSE_SDE = dict(theta=1.7, sigma_min=0.04, sigma_max=0.45, N=30)
DDTSE_K = 3
SGMSE_N = 3

# packages the reference network modules import but the recorded code paths never use
STUB_ROOTS = ("diffusers", "espnet2", "wespeakerruntime", "librosa", "torchaudio", "soundfile", "matplotlib",
              "parser", "onnxruntime", "deepspeed", "einops", "torchvision", "pesq", "pystoi", "torch_pesq")


class _Anything(types.ModuleType):
    """A stand-in module: every attribute is an inert class."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in STUB_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Anything(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Pure-torch upfirdn2d (zero insertion, padding, true 2-D convolution, decimation)."""
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, w)
    if up > 1:
        z = x.new_zeros(b * c, 1, h * up, w * up)
        z[..., ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[..., max(-p0, 0): x.shape[-2] - max(-p1, 0), max(-p0, 0): x.shape[-1] - max(-p1, 0)]
    weight = torch.flip(kernel.to(x.dtype), (0, 1))[None, None]
    x = F.conv2d(x, weight)[..., ::down, ::down]
    return x.reshape(b, c, x.shape[-2], x.shape[-1])


def _package(name: str, path: Path) -> None:
    """Register a package without running its __init__ (which imports the whole training stack)."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module


def install_reference(repo: Path) -> None:
    """Make ``import sgmse....`` load the reference network code from ``repo`` on CPU."""
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, str(repo))
    _package("sgmse", repo / "sgmse")
    _package("sgmse.backbones", repo / "sgmse" / "backbones")
    _package("sgmse.backbones.ncsnpp_utils", repo / "sgmse" / "backbones" / "ncsnpp_utils")
    op = types.ModuleType("sgmse.backbones.ncsnpp_utils.op")
    op.upfirdn2d = upfirdn2d
    op.__path__ = []
    sys.modules[op.__name__] = op
    speaker = _Anything("sgmse.backbones.ncsnpp_utils.speaker_encoder")
    sys.modules[speaker.__name__] = speaker
    # the class reference the reference LightningModules pickle into hyper_parameters
    data_module = types.ModuleType("sgmse.data_module")
    data_module.SpecsDataModule = type("SpecsDataModule", (), {"__module__": "sgmse.data_module"})
    sys.modules[data_module.__name__] = data_module


def lightning_attribute_dict(module: str):
    """Lightning's AttributeDict (a dict subclass), pickled under ``module`` as older versions did."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):  # stand-in packages: the installed Lightning is not imported
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    mod = sys.modules[module]
    cls = type("AttributeDict", (dict,), {"__module__": module})
    mod.AttributeDict = cls
    return cls


def randomise(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Random weights of a sane scale (the reference's zero inits would hide most of the network)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".W") and p.dim() == 1:  # Gaussian Fourier projection: keep its init
                continue
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            scale = 1.0 / fan_in ** 0.5 if p.dim() > 1 else 0.1
            if "GroupNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=gen))


class _Lightning(torch.nn.Module):
    """Stands for the reference LightningModule: ``dnn`` is its first and only parameter holder."""

    def __init__(self, dnn):
        super().__init__()
        self.dnn = dnn


def ema_state(module: torch.nn.Module, gen: torch.Generator):
    """torch_ema's state for ``module.parameters()``, shadow weights perturbed from the raw ones."""
    from torch_ema import ExponentialMovingAverage

    ema = ExponentialMovingAverage(module.parameters(), decay=0.999)
    with torch.no_grad():
        for shadow in ema.shadow_params:
            shadow.add_(0.05 * shadow.abs().mean().clamp_min(1e-3) * torch.randn(shadow.shape, generator=gen))
    ema.num_updates = 1234
    return ema


class NoiseTape:
    """Replaces ``torch.randn_like``: returns pre-drawn tensors in order (and checks their shape)."""

    def __init__(self, draws):
        self.draws, self.used = list(draws), 0

    def __call__(self, x, *args, **kwargs):
        z = self.draws[self.used]
        assert z.shape == x.shape and z.dtype == x.dtype, (z.shape, x.shape, z.dtype, x.dtype)
        self.used += 1
        return z.clone()


def complex_noise(n: int, shape, gen: torch.Generator):
    return [torch.randn(shape, dtype=torch.complex64, generator=gen) for _ in range(n)]


def git_head(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown (not a git checkout)"


def save_checkpoint(path: Path, lightning, ema, hparams, version: str) -> None:
    torch.save({"epoch": 7, "global_step": 1234, "pytorch-lightning_version": version,
                "state_dict": lightning.state_dict(), "ema": ema.state_dict(),
                "hyper_parameters": hparams, "hparams_name": "kwargs"}, path)


# ------------------------------------------------------------------------------------------
def record_ddtse(repo: Path, out: Path) -> dict:
    """The authors' DDTSE network (conditional_film_biggan, x_t only, bottleneck concat) and loop."""
    install_reference(repo)
    from sgmse.backbones.conditional_ncsnpp import ConditionalNCSNpp
    from sgmse.sdes import OUVESDE

    gen = torch.Generator().manual_seed(2024)
    torch.manual_seed(0)
    kwargs = dict(TINY, resblock_type="conditional_film_biggan", middle_concat_attention=True, discriminative=True,
                  centered=True)
    dnn = ConditionalNCSNpp(**kwargs).eval()
    randomise(dnn, gen)
    lightning = _Lightning(dnn)
    ema = ema_state(lightning, gen)
    AttributeDict = lightning_attribute_dict("pytorch_lightning.utilities.parsing")
    hparams = AttributeDict(
        backbone="conditionalncsnpp", sde="ouve", lr=1e-4, ema_decay=0.999, t_eps=0.03, num_eval_files=20,
        loss_type="mse", sisdr=-1.0, triplet=-1.0, suppression_loss=0.0,
        data_module_cls=sys.modules["sgmse.data_module"].SpecsDataModule, spk_encoder=False, inference_step=10,
        teacher_forcing=False, max_threshold=1.0, TF_version2=False, deepspeed_optimizer=False, valid_rir=False,
        theta=1.5, sigma_min=0.05, sigma_max=0.5, sde_n=1000, base_dir="/LibriMix/Libri2Mix/wav16k/min",
        format="default_gt_enroll", batch_size=3, n_fft=510, hop_length=128, num_frames=512, window="hann",
        num_workers=4, dummy=False, spec_factor=0.15, spec_abs_exponent=0.5, normalize="noisy",
        transform_type="exponent", condition_on_spkemb="yes", return_time=False, gpus=8, **kwargs)
    save_checkpoint(out / "slt2024_ddtse.ckpt", lightning, ema, hparams, "1.6.5")

    b, f, n = SHAPE["batch"], SHAPE["bins"], SHAPE["frames"]
    x = torch.randn(b, 2, f, n, dtype=torch.complex64, generator=gen) * 0.5  # [x_t, y]; only x_t is read
    cond = torch.randn(b, 1, 256, generator=gen)
    t = torch.tensor([0.9, 0.2])
    with torch.no_grad():
        raw = dnn(x, t, cond)
        ema.store(lightning.parameters())
        ema.copy_to(lightning.parameters())
        ema_out = dnn(x, t, cond)

        # the authors' inference loop (ConditionalDDTSEModel.enhance, x=None, infer_step=K), with
        # ``self(x, t, Y, condition)`` = dnn(cat([x, Y]), t, condition) (ConditionalDDTSEModel.forward)
        sde = OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5)
        Y = torch.randn(b, 1, f, n, dtype=torch.complex64, generator=gen) * 0.5
        noise = complex_noise(1 + DDTSE_K, Y.shape, gen)
        tape = NoiseTape(noise)
        real_randn_like, torch.randn_like = torch.randn_like, tape
        try:
            model = lambda latents, tt: dnn(torch.cat([latents, Y], dim=1), tt, cond)  # noqa: E731
            steps = []
            latents = sde.prior_sampling(Y.shape, Y)
            eps = 3e-2
            timesteps = torch.linspace(sde.T, eps, DDTSE_K)
            latents = model(latents, torch.tensor(1).unsqueeze(0))
            steps.append(latents)
            for i in range(DDTSE_K):
                tt = timesteps[i].unsqueeze(0)
                mean, std = sde.marginal_prob(latents, tt, Y)
                z = torch.randn_like(Y)
                perturbed = mean + std[:, None, None, None] * z
                latents = model(perturbed, tt)
                steps.append(latents)
        finally:
            torch.randn_like = real_randn_like
        assert tape.used == len(noise)

        times = torch.tensor([0.03, 0.2, 0.5, 1.0])
        x0 = torch.randn(4, 1, f, n, dtype=torch.complex64, generator=gen)
        y = torch.randn(4, 1, f, n, dtype=torch.complex64, generator=gen)
        drift, diffusion = sde.sde(x0, times, y)
        sde_values = dict(times=times, x0=x0, y=y, mean=sde._mean(x0, times, y), std=sde._std(times),
                          drift=drift, diffusion=torch.as_tensor(diffusion))
    torch.save({"x": x, "condition": cond, "t": t, "raw": raw, "ema": ema_out, "Y": Y,
                "noise": torch.stack(noise), "steps": torch.stack(steps), "K": DDTSE_K,
                **{f"sde_{k}": v for k, v in sde_values.items()}}, out / "slt2024_ddtse_io.pt")
    return {"repo": "vivian556123/slt2024-ddtse (branch code)", "commit": git_head(repo),
            "network": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}


def record_sgmse(repo: Path, out: Path) -> dict:
    """sgmse's NCSN++ score network ([x_t, y], time-conditional, scale_by_sigma) and its PC sampler."""
    install_reference(repo)
    from sgmse.backbones.ncsnpp import NCSNpp
    from sgmse.sdes import OUVESDE
    from sgmse import sampling

    gen = torch.Generator().manual_seed(2025)
    torch.manual_seed(1)
    kwargs = dict(TINY, centered=True)
    dnn = NCSNpp(**kwargs).eval()
    randomise(dnn, gen)
    lightning = _Lightning(dnn)
    ema = ema_state(lightning, gen)
    AttributeDict = lightning_attribute_dict("lightning_fabric.utilities.data")  # Lightning 2.x's name
    hparams = AttributeDict(
        backbone="ncsnpp", sde="ouve", lr=1e-4, ema_decay=0.999, t_eps=0.03, num_eval_files=20,
        loss_type="score_matching", loss_weighting="sigma^2", network_scaling=None, c_in="1", c_out="1",
        c_skip="0", sigma_data=0.1, l1_weight=0.001, pesq_weight=0.0, sr=16000,
        data_module_cls=sys.modules["sgmse.data_module"].SpecsDataModule, sampler_type="pc",
        base_dir="/data/VB-DMD", format="default", batch_size=8, n_fft=510, hop_length=128, num_frames=256,
        window="hann", num_workers=4, dummy=False, spec_factor=0.15, spec_abs_exponent=0.5, normalize="noisy",
        transform_type="exponent", gpus=1, **SGMSE_SDE, **kwargs)
    save_checkpoint(out / "sgmse.ckpt", lightning, ema, hparams, "2.4.0")

    b, f, n = SHAPE["batch"], SHAPE["bins"], SHAPE["frames"]
    x = torch.randn(b, 2, f, n, dtype=torch.complex64, generator=gen) * 0.5  # [x_t, y]
    t = torch.tensor([0.7, 0.05])
    with torch.no_grad():
        raw = dnn(x, t)
        ema.store(lightning.parameters())
        ema.copy_to(lightning.parameters())
        ema_out = dnn(x, t)

        sde = OUVESDE(**SGMSE_SDE)
        Y = torch.randn(b, 1, f, n, dtype=torch.complex64, generator=gen) * 0.5

        def score_fn(x_t, y, tt):  # ScoreModel.forward (backbone ncsnpp): -dnn(cat([x_t, y]), t)
            return -dnn(torch.cat([x_t, y], dim=1), tt)

        pc_sde = sde.copy()
        pc_sde.N = SGMSE_N
        noise = complex_noise(1 + 2 * SGMSE_N, Y.shape, gen)
        tape = NoiseTape(noise)
        real_randn_like, torch.randn_like = torch.randn_like, tape
        try:
            sampler = sampling.get_pc_sampler("reverse_diffusion", "ald", sde=pc_sde, score_fn=score_fn, y=Y,
                                              snr=0.5, corrector_steps=1, eps=0.03, intermediate=False)
            sample, nfe = sampler()
        finally:
            torch.randn_like = real_randn_like
        assert tape.used == len(noise) and nfe == 2 * SGMSE_N

        times = torch.tensor([0.03, 0.2, 0.5, 1.0])
        x0 = torch.randn(4, 1, f, n, dtype=torch.complex64, generator=gen)
        y = torch.randn(4, 1, f, n, dtype=torch.complex64, generator=gen)
        drift, diffusion = sde.sde(x0, y, times)
        sde_values = dict(times=times, x0=x0, y=y, mean=sde._mean(x0, y, times), std=sde._std(times),
                          drift=drift, diffusion=torch.as_tensor(diffusion))
    torch.save({"x": x, "t": t, "raw": raw, "ema": ema_out, "Y": Y, "noise": torch.stack(noise),
                "sample": sample, "N": SGMSE_N, "snr": 0.5,
                **{f"sde_{k}": v for k, v in sde_values.items()}}, out / "sgmse_io.pt")
    return {"repo": "sp-uhh/sgmse", "commit": git_head(repo),
            "network": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}, "sde": SGMSE_SDE}


RECORDERS = {"slt2024_ddtse": record_ddtse, "sgmse": record_sgmse}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ddtse_repo", help="checkout of vivian556123/slt2024-ddtse (branch code)")
    p.add_argument("--sgmse_repo", help="checkout of sp-uhh/sgmse")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--_one", choices=sorted(RECORDERS), help=argparse.SUPPRESS)
    p.add_argument("--_repo", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args._one:  # one reference per process: both are a package named "sgmse"
        info = RECORDERS[args._one](Path(args._repo).resolve(), out)
        print(json.dumps(info))
        return 0
    if not (args.ddtse_repo and args.sgmse_repo):
        p.error("give --ddtse_repo and --sgmse_repo")
    provenance = {}
    for fmt, repo in (("slt2024_ddtse", args.ddtse_repo), ("sgmse", args.sgmse_repo)):
        run = subprocess.run([sys.executable, __file__, "--_one", fmt, "--_repo", repo, "--out", str(out)],
                             capture_output=True, text=True)
        if run.returncode:
            sys.stderr.write(run.stdout + run.stderr)
            return run.returncode
        provenance[fmt] = json.loads(run.stdout.strip().splitlines()[-1])
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
