"""Tiny untrained checkpoints and a tiny demo corpus, built in memory or a temp dir, for tests."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ddtse.registry import SYSTEMS
from ddtse.systems.base import CHECKPOINT_KEY

TSB_MODEL = dict(name="td_speakerbeam", N=16, L=8, B=16, H=24, X=2, R=1, adapt_layer=0)


def _speaker(sr: int) -> dict:
    return {"name": "spectral_speaker_encoder", "emb_dim": 32, "sample_rate": sr, "n_fft": 128,
            "win_length": 100, "hop_length": 40, "n_mels": 20, "channels": 32, "layers": 2}


def _backbone(time_conditional: bool) -> dict:
    return {"name": "ncsnpp", "in_channels": 4 if time_conditional else 2, "out_channels": 2, "nf": 16,
            "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "bottleneck_attention": True,
            "time_conditional": time_conditional, "bottleneck_fusion": True}


#: the discriminative kinds: TD-SpeakerBeam variants and DPTNet
DISCRIMINATIVE_MODELS = {
    "tsb": TSB_MODEL,
    "tsb_asa": dict(TSB_MODEL, adaptation="asa"),
    "tsb_asa_mp": dict(TSB_MODEL, adaptation="asa_mp", mp_kernel=4),
    "tsb_ipd": dict(TSB_MODEL, ipd=True, ipd_fft_factor=2, ipd_dim=8),
    "dptnet": dict(name="dptnet", n=8, e=16, k=6, d=1, heads=2, lstm_hidden=4, window=8),
}


def _flow_backbone(interval: bool) -> dict:
    return dict(_backbone(True), in_channels=2, time_embedding="linear", interval_conditional=interval)


#: the flow systems' tiny configs: background path on the linear STFT (AD-FlowTSE, fixed start
#: tau_hat 0.5 so no predictor is needed) and mixture path on the compressed one (MeanFlow-TSE)
FLOW_SYSTEMS = {
    "adflow_tse": ({"path": "background", "spec": {"transform": "exponent", "alpha": 1.0, "beta": 0.1}},
                   {"nfe": 1, "mr_source": "fixed:0.5"}),
    "meanflow_tse": ({"path": "mixture", "objective": "alphaflow_self", "alpha_schedule": {"total_steps": 4}},
                     {"nfe": 1}),
}


def tiny_config(kind: str, sr: int = 8000) -> dict:
    """``kind``: one of DISCRIMINATIVE_MODELS, "tsb_speaker" / "tsb_ecapa" (TSB with a spectral /
    ECAPA-TDNN speaker encoder as its clue), "ddtse", "sgmse", "adflow_tse" or "meanflow_tse"
    (tiny NCSN++), at ``sr``."""
    if kind in DISCRIMINATIVE_MODELS or kind in ("tsb_speaker", "tsb_ecapa"):
        model = dict(DISCRIMINATIVE_MODELS.get(kind, TSB_MODEL))
        if kind == "tsb_speaker":
            model["speaker"] = _speaker(sr)
        elif kind == "tsb_ecapa":  # the demo's clue: an ECAPA-TDNN (here untrained and tiny)
            model["speaker"] = {"name": "ecapa_tdnn", "emb_dim": 16, "sample_rate": sr, "n_fft": 128,
                                "win_length": 100, "hop_length": 40, "n_mels": 20, "channels": 16,
                                "se_channels": 8, "attention_channels": 8}
        return {"seed": 0, "data": {"sample_rate": sr}, "model": model,
                "system": {"name": "discriminative", "lr": 1e-3, "ema_decay": 0.0}}
    if kind in FLOW_SYSTEMS:
        system, sampler = FLOW_SYSTEMS[kind]
        return {"seed": 0, "data": {"sample_rate": sr},
                "model": {"name": "ddtse_net", "backbone": _flow_backbone(kind == "meanflow_tse"),
                          "speaker": _speaker(sr)},
                "system": {"name": kind, "lr": 1e-3, "ema_decay": 0.0, **copy.deepcopy(system)},
                "sampler": dict(sampler)}
    name, tc, sampler = {"ddtse": ("ddtse", False, {"K": 1, "seed": 100}),
                         "sgmse": ("sgmse", True, {"N": 2, "seed": 100})}[kind]
    return {"seed": 0, "data": {"sample_rate": sr},
            "model": {"name": "ddtse_net", "backbone": _backbone(tc), "speaker": _speaker(sr)},
            "system": {"name": name, "lr": 1e-3, "ema_decay": 0.0}, "sampler": sampler}


def make_checkpoint(path: str | Path, kind: str = "tsb", sr: int = 8000, seed: int = 0) -> Path:
    """Write a checkpoint of an untrained tiny ``kind`` system that ``Extractor.load`` accepts."""
    torch.manual_seed(seed)
    config = tiny_config(kind, sr)
    system = SYSTEMS.get(config["system"]["name"])(copy.deepcopy(config))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({CHECKPOINT_KEY: config["system"]["name"], "state_dict": system.state_dict(),
                "hyper_parameters": {"config": config}}, path)
    return path


def make_tiny_corpus(tmp_path_factory) -> Path:
    """A 6/2/2-mixture demo corpus at 8 kHz (3/2/2 speakers) for end-to-end training tests."""
    from ddtse.data.demo_corpus import build_demo_corpus

    root = tmp_path_factory.mktemp("corpus") / "Libri2Mix"
    build_demo_corpus(root, mixtures={"train-100": 6, "dev": 2, "test": 2},
                      speakers={"train-100": 3, "dev": 2, "test": 2}, rates=(8000,), seed=3, processes=1)
    return root
