"""Absent-target items (issue 16): ``absent_target_prob`` removes the target from a share of the
mixtures; the discriminative loss, validation and the scorer handle silent targets."""
from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_helpers import RATE
from ddtse.data.datamodule import collate_batch
from ddtse.data.librimix import Libri2MixDataset, librimix_split_paths, make_enrollment_map, MAP_NAME
from ddtse.errors import DdtseError
from ddtse.metrics import absent_energy_db, compute_metrics, energy_ratio_db

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_ckpt import tiny_config  # noqa: E402


def _dev(root, **kw):
    split = root / "wav8k/min/dev"
    if not (split / MAP_NAME).exists():
        lines, _ = make_enrollment_map(librimix_split_paths(split, "mix_both"), 0)
        (split / MAP_NAME).write_text("\n".join(lines) + "\n")
    return Libri2MixDataset(sample_rate=RATE, root=str(root), split="dev", **kw)


def _batch(n: int, seed: int, absent: list | None = None) -> dict:
    """A random batch of ``n`` 0.5 s items; the targets of ``absent`` items are silent."""
    g = torch.Generator().manual_seed(seed)
    batch = {"mixture": 0.1 * torch.randn(n, 1, 4000, generator=g), "target": 0.1 * torch.randn(n, 4000, generator=g),
             "enrollment": 0.1 * torch.randn(n, 4000, generator=g), "lengths": torch.tensor([4000] * n),
             "enrollment_lengths": torch.tensor([4000] * n)}
    if absent is not None:
        batch["absent"] = torch.tensor(absent)
        batch["target"][batch["absent"]] = 0
    return batch


def test_absent_items_are_the_mixture_without_the_target(librimix_root):
    full, absent = _dev(librimix_root), _dev(librimix_root, absent_target_prob=1.0)
    split = librimix_root / "wav8k/min/dev"
    for i in range(len(full)):
        a, b = full[i], absent[i]
        assert b["absent"] is True and not np.any(b["target"]) and b["target"].shape == a["target"].shape
        k, mid = b["id"].split("/")
        other = sf.read(split / f"s{3 - int(k[1])}" / f"{mid}.wav", dtype="float32")[0]
        noise = sf.read(split / "noise" / f"{mid}.wav", dtype="float32")[0]
        np.testing.assert_allclose(b["mixture"], other + noise, atol=1e-6)  # the interferer and the noise only
        np.testing.assert_array_equal(b["enrollment"], a["enrollment"])  # still the target's enrollment
    assert "absent" not in full[0]


def test_share_is_seeded_per_item_and_epoch(librimix_root):
    ds = _dev(librimix_root, absent_target_prob=0.5, train=True, seed=3)
    draws = np.array([[ds[(i, e)]["absent"] for i in range(len(ds))] for e in range(40)])
    assert 0.35 < draws.mean() < 0.65  # about half, over items and epochs
    assert not (draws == draws[0]).all()  # it changes from epoch to epoch in training
    again = _dev(librimix_root, absent_target_prob=0.5, train=True, seed=3)
    assert [again[(i, 5)]["absent"] for i in range(len(ds))] == list(draws[5])
    evaluation = _dev(librimix_root, absent_target_prob=0.5)
    assert [evaluation[i]["absent"] for i in range(len(ds))] == [evaluation[i]["absent"] for i in range(len(ds))]
    batch = collate_batch([ds[(0, 0)], ds[(1, 0)]])
    assert batch["absent"].dtype == torch.bool and batch["absent"].tolist() == [ds[(0, 0)]["absent"], ds[(1, 0)]["absent"]]


def test_refused_where_the_mixture_is_not_a_sum(librimix_root):
    with pytest.raises(DdtseError, match=r"absent_target_prob must be in \[0, 1\]"):
        _dev(librimix_root, absent_target_prob=1.5)
    from ddtse.data.clean_dirty import CleanDirtyDataset

    assert CleanDirtyDataset.supports_absent_target is False


def test_absent_energy_loss_values_and_threshold():
    mix = torch.randn(3, 8000)
    est = torch.stack([0.1 * mix[0], torch.zeros(8000), mix[2]])
    plain = absent_energy_db(est, mix, None, 0.0)
    assert plain[0].item() == pytest.approx(-20.0, abs=1e-4) and plain[2].item() == pytest.approx(0.0, abs=1e-4)
    assert plain[1].item() == pytest.approx(-120.0)  # floored, not -inf
    soft = absent_energy_db(est, mix, None, 1e-3)
    assert soft[0].item() == pytest.approx(10 * math.log10(0.01 + 1e-3), abs=1e-4)
    assert soft[1].item() == pytest.approx(-30.0, abs=1e-4)  # the soft threshold: no reward below -30 dB
    lengths = torch.tensor([4000, 8000, 8000])
    half = absent_energy_db(torch.cat([0.1 * mix[:1, :4000], mix[:1, 4000:]], -1).expand(3, -1), mix[:1].expand(3, -1),
                            lengths, 0.0)
    assert half[0].item() == pytest.approx(-20.0, abs=1e-4)  # only the valid samples count


def test_discriminative_loss_on_a_batch_with_absent_items():
    from ddtse.registry import SYSTEMS

    torch.manual_seed(0)
    system = SYSTEMS.get("discriminative")(copy.deepcopy(tiny_config("tsb")))
    batch = _batch(2, seed=0, absent=[False, True])
    loss, logs = system.training_loss(batch)
    estimate = system.run_model(system.model, batch)
    from ddtse.metrics import masked_si_sdr

    sdr0 = masked_si_sdr(estimate[:1], batch["target"][:1], None)[0]
    level0 = abs(10 * math.log10(estimate[0].pow(2).sum().item() / batch["target"][0].pow(2).sum().item()))
    energy1 = absent_energy_db(estimate[1:], batch["mixture"][1:, 0], None, 10 ** -2.5)[0]  # the default floor: -25 dB
    assert loss.item() == pytest.approx((-sdr0.item() + level0 + energy1.item()) / 2, abs=1e-3)
    assert logs["si_sdr"].item() == pytest.approx(sdr0.item(), abs=1e-4)
    assert logs["level_error_db"].item() == pytest.approx(level0, abs=1e-3) and "absent_energy_loss" in logs
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in system.model.parameters() if p.grad is not None)


def test_quieter_everywhere_is_not_a_way_out():
    """Shrinking every output by 30 dB passes the absent term, so present items pay for their level:
    the loss of a batch with absent items is not scale invariant, that of a batch without them is."""
    from ddtse.metrics import level_error_db
    from ddtse.registry import SYSTEMS

    target = torch.randn(2, 4000)
    assert level_error_db(0.1 * target, target, None).tolist() == pytest.approx([20.0, 20.0], abs=1e-3)
    assert level_error_db(target, target, torch.tensor([2000, 4000])).tolist() == pytest.approx([0.0, 0.0], abs=1e-4)
    torch.manual_seed(0)
    system = SYSTEMS.get("discriminative")(copy.deepcopy(tiny_config("tsb")))
    batch = _batch(2, seed=0)
    losses = {}
    for scale in (1.0, 10 ** -1.5):  # -30 dB
        system.run_model = lambda model, b, return_aux=False, s=scale: \
            {"estimate": s * (b["target"] + 0.3 * b["mixture"][:, 0])} if return_aux else None
        losses[scale, "without"] = system.training_loss(batch)[0].item()
        losses[scale, "with"] = system.training_loss(dict(batch, absent=torch.tensor([False, False])))[0].item()
    quiet = 10 ** -1.5
    assert losses[1.0, "without"] == pytest.approx(losses[quiet, "without"], abs=1e-2)
    assert losses[quiet, "with"] - losses[1.0, "with"] == pytest.approx(30.0, abs=1.0)  # 30 dB more level error


def test_validation_logs_absent_energy_and_scores_present_items_only():
    from ddtse.registry import SYSTEMS

    torch.manual_seed(0)
    system = SYSTEMS.get("discriminative")(copy.deepcopy(tiny_config("tsb")))
    system._val_items_scored = 0
    logged = {}
    system.log = lambda name, value, **kw: logged.__setitem__(name, (float(value), kw.get("batch_size")))
    batch = _batch(3, seed=1, absent=[True, False, True])
    system.validation_step(batch, 0)
    assert logged["val/si_sdr"][1] == 1 and logged["val/absent_energy_db"][1] == 2
    assert math.isfinite(logged["val/si_sdr"][0]) and math.isfinite(logged["val/absent_energy_db"][0])
    # val/loss is the training objective of the EMA extractor (here still equal to the model): the
    # monitor that weighs absent against present items when picking a checkpoint
    with torch.no_grad():
        objective = system.training_loss(batch)[0].item()
    assert logged["val/loss"][0] == pytest.approx(objective, abs=1e-4)


def test_scorer_reports_absent_items_by_output_energy(tmp_path):
    from ddtse.cli import run_cli
    from ddtse.cli.score import main as score

    rng = np.random.default_rng(0)
    dirs = {name: tmp_path / name for name in ("gt", "est", "mix")}
    for d in dirs.values():
        d.mkdir()
    target, interferer = rng.standard_normal(8000) * 0.1, rng.standard_normal(8000) * 0.1
    cases = {"present": (target, target + interferer, target + 0.1 * interferer),
             "absent": (np.zeros(8000), interferer, 0.1 * interferer),
             "absent_silent": (np.zeros(8000), interferer, np.zeros(8000))}  # a perfect answer: silence
    for name, (ref, mix, est) in cases.items():
        for d, wav in (("gt", ref), ("mix", mix), ("est", est)):
            sf.write(dirs[d] / f"{name}.wav", wav.astype(np.float32), RATE, subtype="FLOAT")
    out = tmp_path / "scores"
    assert run_cli(score, ["--gt_dir", str(dirs["gt"]), "--enhanced_dir", str(dirs["est"]), "--mix_dir", str(dirs["mix"]),
                           "--metrics", "si_sdr,si_sdri,absent_energy_db", "--out_dir", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["si_sdr"]["count"] == 1 and summary["absent_energy_db"]["count"] == 2
    rows = {line.split(",")[0]: line.split(",") for line in (out / "per_utt.csv").read_text().splitlines()[1:]}
    header = (out / "per_utt.csv").read_text().splitlines()[0].split(",")
    absent = dict(zip(header, rows["absent"]))
    assert float(absent["absent_energy_db"]) == pytest.approx(-20.0, abs=1e-3) and absent["si_sdr"] in ("", "nan")
    assert float(dict(zip(header, rows["absent_silent"]))["absent_energy_db"]) == pytest.approx(-120.0)
    m = compute_metrics(target, target + 0.1 * interferer, RATE, target + interferer,
                        ["si_sdr", "absent_energy_db", "present_energy_db"])
    assert "absent_energy_db" not in m and m["si_sdr"] > 15
    assert m["present_energy_db"] == pytest.approx(energy_ratio_db(target + 0.1 * interferer, target + interferer))
    assert "present_energy_db" not in compute_metrics(np.zeros(8000), interferer, RATE, interferer, ["present_energy_db"])
    assert energy_ratio_db(0.5 * interferer, interferer) == pytest.approx(-6.0206, abs=1e-3)


def test_ddtse_reconstruction_loss_is_defined_for_absent_items():
    """DDTSE needs no new loss: a silent target is a zero compressed spectrogram (no NaN from the
    magnitude compression), so its reconstruction loss rewards a silent estimate."""
    from ddtse.registry import SYSTEMS

    torch.manual_seed(0)
    system = SYSTEMS.get("ddtse")(copy.deepcopy(tiny_config("ddtse")))
    batch = _batch(2, seed=2, absent=[False, True])
    y, x0, mask, _ = system.prepare(batch)
    assert torch.all(x0[1] == 0) and bool(x0[0].abs().sum() > 0) and torch.isfinite(y).all()
    loss, logs = system.training_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in system.model.parameters()
                                        if p.grad is not None)
