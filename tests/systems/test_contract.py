"""The extractor contract (issue 14, docs/design.md "Extractor contract"): every registered system
that is an extractor trains a few steps from a tiny config, saves a checkpoint, loads through
``Extractor.load`` and extracts, exposing the protocol that inference, the CLI and the recipes
read. A new system in SYSTEMS without a tiny config below, or one that breaks the protocol,
fails here."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_ckpt import tiny_config  # noqa: E402

from ddtse.errors import DdtseError  # noqa: E402
from ddtse.extract import ChainExtractor, Extractor  # noqa: E402
from ddtse.registry import SYSTEMS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 8000

DPTNET = {"seed": 0, "data": {"sample_rate": SR},
          "model": {"name": "dptnet", "n": 8, "e": 16, "k": 6, "d": 1, "heads": 2, "lstm_hidden": 4, "window": 8},
          "system": {"name": "discriminative", "lr": 1e-3, "ema_decay": 0.0}}
#: system name -> tiny configs (several when the models it trains differ in the protocol)
TINY = {
    "discriminative": {"tsb": tiny_config("tsb", SR), "dptnet": DPTNET},
    "ddtse": {"ddtse": tiny_config("ddtse", SR)},
    "sgmse": {"sgmse": tiny_config("sgmse", SR)},
    "adflow_tse": {"adflow_tse": tiny_config("adflow_tse", SR)},
    "meanflow_tse": {"meanflow_tse": tiny_config("meanflow_tse", SR)},
}


def extractor_systems() -> list[str]:
    return [name for name in SYSTEMS.names() if SYSTEMS.get(name).is_extractor]


CASES = [(name, variant) for name in extractor_systems() for variant in TINY.get(name, {None: None})]


def _batches(n: int, needs_enrollment: bool, t: int = 2400):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        target = 0.3 * torch.randn(2, t, generator=g)
        batch = {"mixture": (target + 0.2 * torch.randn(2, t, generator=g))[:, None], "target": target,
                 "lengths": torch.tensor([t, t - 400])}
        if needs_enrollment:
            batch["enrollment"] = 0.3 * torch.randn(2, SR, generator=g)
            batch["enrollment_lengths"] = torch.tensor([SR, SR - 800])
        out.append(batch)
    return out


def _train_and_save(config: dict, path: Path) -> Path:
    """A few optimiser steps through Lightning, then the checkpoint train.py would write."""
    torch.manual_seed(0)
    system = SYSTEMS.get(config["system"]["name"])(copy.deepcopy(config))
    loader = torch.utils.data.DataLoader(_batches(2, system.needs_enrollment), batch_size=None)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    before = [p.detach().clone() for p in system.model.parameters()]
    trainer.fit(system, loader)
    assert any(not torch.equal(a, b) for a, b in zip(before, system.model.parameters())), "training changed nothing"
    trainer.save_checkpoint(str(path))
    return path


def test_every_registered_extractor_has_a_tiny_config():
    missing = [name for name in extractor_systems() if name not in TINY]
    assert not missing, (f"system(s) {missing} are registered extractors without a tiny config in "
                         "tests/systems/test_contract.py (add one; set is_extractor = False if it extracts nothing)")


@pytest.mark.parametrize("name,variant", CASES)
def test_extractor_contract(name, variant, tmp_path):
    if variant is None:
        pytest.fail(f"no tiny config for system {name!r}")
    config = TINY[name][variant]
    ckpt = _train_and_save(config, tmp_path / f"{name}_{variant}.ckpt")
    ex = Extractor.load(ckpt, "cpu")

    # the protocol
    assert ex.name == name and ex.sample_rate == SR
    assert isinstance(ex.needs_enrollment, bool) and isinstance(ex.can_refine, bool)
    assert isinstance(ex.in_channels, int) and ex.in_channels >= 1
    assert isinstance(ex.min_samples, int) and ex.min_samples >= 1
    options = ex.sampler_options()
    assert isinstance(options, dict)
    for opt, spec in options.items():
        kind, default, text = spec
        assert kind in (int, float, bool, str), opt
        assert isinstance(text, str) and text, f"option {opt} has no help"
    defaults = {opt: default for opt, (_, default, _) in options.items()}
    assert ex.validate_options(defaults) == defaults
    assert ex.system.validate_options(defaults) == defaults
    assert ex.system.declared_keys("sampler_keys") == {k: v[0] for k, v in options.items()}  # = sampler: config keys
    with pytest.raises(DdtseError, match="no_such_option.*valid options"):
        ex.validate_options({"no_such_option": 1})
    ex.validate_options({"seed": 3})  # every extractor takes a seed (deterministic ones ignore it)

    # extraction: output length = input length, also for inputs shorter than min_samples and at another rate
    rng = np.random.default_rng(1)
    enrollment = (0.3 * rng.standard_normal(SR)).astype(np.float32) if ex.needs_enrollment else None
    for length, rate in ((2000, SR), (max(ex.min_samples - 3, 1), SR), (3000, 16000)):
        mixture = (0.3 * rng.standard_normal((ex.in_channels, length))).astype(np.float32)
        enr = None if enrollment is None else np.repeat(enrollment, rate // SR)
        estimate, info = ex.extract(mixture, enr, rate, item_id="x", **defaults)
        assert estimate.shape == (length,) and np.isfinite(estimate).all(), (length, rate)
        assert info["nfe"] >= 1 and info["seconds"] >= 0
    if ex.needs_enrollment:
        with pytest.raises(DdtseError, match="enrollment"):
            ex.extract_batch({"mixture": torch.zeros(1, ex.in_channels, 2000)})

    # refinement only where declared
    mixture = (0.3 * rng.standard_normal((ex.in_channels, 2000))).astype(np.float32)
    if ex.can_refine:
        refined, _ = ex.extract(mixture, enrollment, initial_estimate=mixture[0], **defaults)
        assert refined.shape == (2000,)
        chain = ChainExtractor(ex, ex)
        assert chain.sampler_options() == options
        assert chain.extract(mixture, enrollment)[0].shape == (2000,)
    else:
        with pytest.raises(DdtseError, match="cannot refine"):
            ex.extract(mixture, enrollment, initial_estimate=mixture[0])
        with pytest.raises(DdtseError, match="can refine"):
            ChainExtractor(ex, ex)


def test_non_extractors_are_refused_by_extractor():
    for name in SYSTEMS.names():
        cls = SYSTEMS.get(name)
        if cls.is_extractor:
            continue
        system = cls.__new__(cls)  # no config needed to see the refusal
        with pytest.raises(DdtseError, match="not an extractor"):
            Extractor(system, "cpu")
