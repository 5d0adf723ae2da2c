"""Fidelity (issue 21): the DDTSE authors' and sgmse's checkpoints import into ddtse and give the
reference's outputs. The fixtures (tests/assets/reference, written by
tools/reference/record_fixtures.py from the reference code) hold tiny random-weight reference
networks in the reference checkpoint layout, with inputs and the reference's outputs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ddtse.checkpoint import load_system
from ddtse.cli import run_cli
from ddtse.cli.infer import main as infer_main
from ddtse.cli.main import main as ddtse_main
from ddtse.diffusion.samplers import NoiseTape, ddtse_sample, pc_sample
from ddtse.errors import DdtseError
from ddtse.reference_import import import_checkpoint, read_reference_checkpoint

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tests" / "assets" / "reference"
FORMATS = ("slt2024_ddtse", "sgmse")
NET_TOL = 1e-4  # max|a - b| <= NET_TOL * max|b|
SDE_TOL = 1e-5


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float) -> float:
    """The relative error max|a - b| / max|b|, asserted <= tol."""
    err = float((ours - ref).abs().max() / ref.abs().max())
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"
    return err


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{format: (system, recorded io)} of each fixture imported once."""
    out = {}
    folder = tmp_path_factory.mktemp("imported")
    for fmt in FORMATS:
        path = folder / f"{fmt}.ckpt"
        import_checkpoint(fmt, ASSETS / f"{fmt}.ckpt", path)
        out[fmt] = (load_system(path), torch.load(ASSETS / f"{fmt}_io.pt", weights_only=True), path)
    return out


def network_output(system, fmt: str, io: dict, use_ema: bool) -> torch.Tensor:
    """The imported network on the recorded input, in the reference's output convention."""
    net = system.inference_model(use_ema)
    x_t, y = io["x"][:, :1], io["x"][:, 1:]
    if fmt == "slt2024_ddtse":  # D(x_t, e): x_t only, the embedding as given to their FiLM
        emb = system.speaker_embedding(net, {"embedding": io["condition"][:, 0]})
        return system.denoise(net, x_t, emb)
    emb = system.speaker_embedding(net, {})  # no speaker clue: None
    return -system.score(net, x_t, y, io["t"], emb)  # sgmse records NN = -score


# -- networks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("use_ema", [False, True], ids=["raw", "ema"])
def test_imported_network_equals_reference(imported, fmt, use_ema):
    system, io, _ = imported[fmt]
    close(network_output(system, fmt, io, use_ema), io["ema" if use_ema else "raw"], NET_TOL)


def test_raw_and_ema_weights_differ(imported):
    """The fixture's EMA weights are perturbed, so the two comparisons above test different weights."""
    for fmt in FORMATS:
        _, io, _ = imported[fmt]
        assert float((io["raw"] - io["ema"]).abs().max() / io["raw"].abs().max()) > 1e-2


def test_reference_film_layout_is_needed(imported):
    """Our per-channel FiLM (the default) does not give the authors' outputs: the compatibility
    layout is what makes the imported network equal theirs (and this test able to fail)."""
    system, io, _ = imported["slt2024_ddtse"]
    net = system.inference_model(True)
    for module in net.backbone.modules():
        if hasattr(module, "layout"):
            module.layout = "per_channel"
    try:
        out = network_output(system, "slt2024_ddtse", io, True)
    finally:
        for module in net.backbone.modules():
            if hasattr(module, "layout"):
                module.layout = "slt2024"
    assert float((out - io["ema"]).abs().max() / io["ema"].abs().max()) > 1e-2


def test_imported_configs(imported):
    ddtse, _, _ = imported["slt2024_ddtse"]
    backbone = ddtse.config["model"]["backbone"]
    assert ddtse.config["model"]["speaker"] == {"name": "precomputed", "dim": 256}
    assert backbone["in_channels"] == 2 and not backbone["time_conditional"] and backbone["bottleneck_fusion"]
    assert backbone["film_layout"] == "slt2024" and backbone["nf"] == 4 and backbone["ch_mult"] == [1, 2]
    assert ddtse.needs_enrollment is False
    sgmse, _, _ = imported["sgmse"]
    assert sgmse.config["model"]["speaker"] is None and sgmse.needs_enrollment is False
    assert sgmse.config["model"]["backbone"]["scale_by_t"] is True
    # SDE options of the checkpoint's hyper_parameters, not the defaults
    assert (sgmse.sde.theta, sgmse.sde.sigma_min, sgmse.sde.sigma_max) == (1.7, 0.04, 0.45)
    from ddtse.schema import validate_config

    for system in (ddtse, sgmse):  # a config train.py accepts (e.g. to fine-tune from the import)
        validate_config(system.config)


# -- the OUVE SDE ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_sde_equals_reference(imported, fmt):
    system, io, _ = imported[fmt]
    sde, t = system.sde, io["sde_times"]
    x0, y = io["sde_x0"], io["sde_y"]
    close(sde.mean(x0, y, t), io["sde_mean"], SDE_TOL)
    close(sde.std(t), io["sde_std"], SDE_TOL)
    close(sde.drift(x0, y), io["sde_drift"], SDE_TOL)
    close(sde.g(t), io["sde_diffusion"], SDE_TOL)


# -- samplers driven by the reference's recorded noise ---------------------------------------------
def test_ddtse_sampler_equals_authors_loop_step_by_step(imported):
    system, io, _ = imported["slt2024_ddtse"]
    net = system.inference_model(True)
    emb = system.speaker_embedding(net, {"embedding": io["condition"][:, 0]})
    steps = []

    def denoiser(x_t):
        steps.append(system.denoise(net, x_t, emb))
        return steps[-1]

    tape = NoiseTape(io["noise"])
    estimate, nfe = ddtse_sample(denoiser, io["Y"], system.sde, K=int(io["K"]), generator=tape)
    assert nfe == 1 + int(io["K"]) == len(steps) == io["steps"].shape[0] and tape.used == len(io["noise"])
    for ours, ref in zip(steps, io["steps"]):
        close(ours, ref, NET_TOL)
    close(estimate, io["steps"][-1], NET_TOL)


def test_pc_sampler_equals_sgmse(imported):
    system, io, _ = imported["sgmse"]
    net = system.inference_model(True)
    y = io["Y"]
    tape = NoiseTape(io["noise"])
    sample, nfe = pc_sample(lambda x, t: system.score(net, x, y, t, None), y, system.sde, N=int(io["N"]),
                            snr=float(io["snr"]), corrector_steps=1, generator=tape)
    assert nfe == 2 * int(io["N"])
    # sgmse draws one more noise than it uses: the last predictor's noise (the mean is returned)
    assert tape.used == len(io["noise"])
    close(sample, io["sample"], NET_TOL)


def test_noise_tape_refuses_a_wrong_draw():
    tape = NoiseTape([torch.zeros(1, 1, 4, 4, dtype=torch.complex64)])
    with pytest.raises(DdtseError, match="shape"):
        tape.randn_like(torch.zeros(1, 1, 4, 8, dtype=torch.complex64))
    with pytest.raises(DdtseError, match="more than"):
        NoiseTape([]).randn_like(torch.zeros(1))


# -- bad checkpoints: one line, nothing written -------------------------------------------------
def _modified(tmp_path: Path, name: str, change) -> Path:
    ckpt = read_reference_checkpoint(ASSETS / "slt2024_ddtse.ckpt")
    ckpt["hyper_parameters"].pop("data_module_cls")  # a placeholder after reading; not re-pickled here
    change(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


class _Payload:
    """Unpickling this would create ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _refused(capsys, fmt: str, ckpt: Path, out: Path, *words: str) -> str:
    code = ddtse_main(["import", "--format", fmt, "--ckpt", str(ckpt), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert not out.exists() and not out.with_name(out.name + ".part").exists()
    return err


def test_wrong_format_is_one_line(tmp_path, capsys):
    _refused(capsys, "sgmse", ASSETS / "slt2024_ddtse.ckpt", tmp_path / "o.ckpt", "conditionalncsnpp",
             "--format slt2024_ddtse")
    _refused(capsys, "slt2024_ddtse", ASSETS / "sgmse.ckpt", tmp_path / "o.ckpt", "'ncsnpp'", "--format sgmse")


def test_another_backbone_or_layout_is_one_line(tmp_path, capsys):
    dcunet = _modified(tmp_path, "dcunet.ckpt", lambda c: c["hyper_parameters"].update(backbone="dcunet"))
    _refused(capsys, "slt2024_ddtse", dcunet, tmp_path / "o.ckpt", "dcunet")
    cross = _modified(tmp_path, "cross.ckpt",
                      lambda c: c["hyper_parameters"].update(resblock_type="conditional_biggan_cross_attn"))
    _refused(capsys, "slt2024_ddtse", cross, tmp_path / "o.ckpt", "resblock_type", "conditional_biggan_cross_attn")
    four = _modified(tmp_path, "four.ckpt", lambda c: c["hyper_parameters"].update(discriminative=False))
    _refused(capsys, "slt2024_ddtse", four, tmp_path / "o.ckpt", "discriminative")
    wider = _modified(tmp_path, "wider.ckpt", lambda c: c["hyper_parameters"].update(nf=8))
    _refused(capsys, "slt2024_ddtse", wider, tmp_path / "o.ckpt", "shape")


def test_missing_ema_is_one_line(tmp_path, capsys):
    no_ema = _modified(tmp_path, "no_ema.ckpt", lambda c: c.pop("ema"))
    _refused(capsys, "slt2024_ddtse", no_ema, tmp_path / "o.ckpt", "EMA")


def test_planted_pickle_stays_inert(tmp_path, capsys):
    marker = tmp_path / "pwned"
    planted = _modified(tmp_path, "planted.ckpt", lambda c: c["hyper_parameters"].update(payload=_Payload(marker)))
    _refused(capsys, "slt2024_ddtse", planted, tmp_path / "o.ckpt", "io.open")
    assert not marker.exists()


def test_allowlisted_name_called_by_a_payload_stays_inert(tmp_path, capsys):
    """A payload that reduces through an allowed reference class name only builds a placeholder."""
    import types

    marker = tmp_path / "pwned"
    module = types.ModuleType("sgmse.data_module")

    class SpecsDataModule:  # stands for the real class at save time; its call would write marker
        def __init__(self, path):
            Path(path).write_text("x")

    SpecsDataModule.__module__, SpecsDataModule.__qualname__ = "sgmse.data_module", "SpecsDataModule"
    module.SpecsDataModule = SpecsDataModule

    class Payload:
        def __reduce__(self):
            return (SpecsDataModule, (str(marker),))

    saved = {k: sys.modules.get(k) for k in ("sgmse", "sgmse.data_module")}
    sys.modules["sgmse"] = types.ModuleType("sgmse")
    sys.modules["sgmse.data_module"] = module
    try:
        path = _modified(tmp_path, "reduce.ckpt", lambda c: c["hyper_parameters"].update(payload=Payload()))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    out = tmp_path / "o.ckpt"
    import_checkpoint("slt2024_ddtse", path, out)  # loads: the payload is an inert placeholder
    assert not marker.exists() and out.is_file()


def test_existing_output_is_not_overwritten(imported, tmp_path, capsys):
    out = tmp_path / "o.ckpt"
    out.write_bytes(b"keep")
    _code = ddtse_main(["import", "--format", "sgmse", "--ckpt", str(ASSETS / "sgmse.ckpt"), "--output", str(out)])
    assert _code == 2 and "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep"


# -- end to end: python -m ddtse import, then infer.py -------------------------------------------
def _mixture(tmp_path: Path) -> tuple[Path, int]:
    wav, sr = sf.read(REPO / "tests" / "assets" / "arctic_a0007_male.wav", dtype="float32")
    wav = wav[sr: sr + 4321]  # 0.27 s at 16 kHz: an odd length
    path = tmp_path / "mix.wav"
    sf.write(path, wav, sr, subtype="FLOAT")
    return path, len(wav)


def test_python_m_ddtse_import_then_infer_ddtse(tmp_path):
    out = tmp_path / "authors.ckpt"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "ddtse", "import", "--format", "slt2024_ddtse", "--ckpt",
                           str(ASSETS / "slt2024_ddtse.ckpt"), "--output", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "wrote" in proc.stdout
    mix, length = _mixture(tmp_path)
    emb = tmp_path / "spk.npy"
    np.save(emb, np.random.default_rng(0).standard_normal(256).astype(np.float32))
    est = tmp_path / "est.wav"
    assert run_cli(infer_main, ["--ckpt", str(out), "--mixture", str(mix), "--embedding", str(emb),
                                "--output", str(est), "--K", "0", "--quiet"]) == 0
    wav, _ = sf.read(est, dtype="float32")
    assert wav.shape == (length,) and np.all(np.isfinite(wav)) and np.abs(wav).max() > 0
    # the embedding is used: another one gives another estimate
    np.save(emb, np.random.default_rng(1).standard_normal(256).astype(np.float32))
    est2 = tmp_path / "est2.wav"
    assert run_cli(infer_main, ["--ckpt", str(out), "--mixture", str(mix), "--embedding", str(emb),
                                "--output", str(est2), "--K", "0", "--quiet"]) == 0
    assert not np.allclose(sf.read(est2, dtype="float32")[0], wav)


def test_infer_list_with_embedding_column_and_missing_embedding(imported, tmp_path, capsys):
    _, _, ckpt = imported["slt2024_ddtse"]
    mix, length = _mixture(tmp_path)
    np.save(tmp_path / "e.npy", np.ones(256, np.float32))
    (tmp_path / "list.csv").write_text(f"id,mixture,embedding\na,{mix.name},e.npy\n")
    out_dir = tmp_path / "out"
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--list", str(tmp_path / "list.csv"), "--out_dir",
                                str(out_dir), "--K", "0", "--quiet"]) == 0
    assert sf.read(out_dir / "a.wav")[0].shape == (length,)
    capsys.readouterr()
    # without an embedding: one line naming the remedy, no output
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--mixture", str(mix), "--output",
                                str(tmp_path / "none.wav"), "--K", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--embedding" in err and not (tmp_path / "none.wav").exists()


def test_imported_sgmse_runs_without_enrollment(imported, tmp_path):
    _, _, ckpt = imported["sgmse"]
    mix, length = _mixture(tmp_path)
    est = tmp_path / "enh.wav"
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--mixture", str(mix), "--output", str(est),
                                "--N", "1", "--opt", "corrector_steps=0", "--quiet"]) == 0
    wav, _ = sf.read(est, dtype="float32")
    assert wav.shape == (length,) and np.all(np.isfinite(wav))


def test_imported_checkpoint_is_an_init_from_source(imported):
    """Fine-tuning starts from an imported checkpoint like from any ddtse one (weights and EMA)."""
    import copy

    from ddtse.registry import SYSTEMS

    system, _, path = imported["slt2024_ddtse"]
    config = copy.deepcopy(system.config)
    config["system"]["init_from"] = str(path)
    fresh = SYSTEMS.get("ddtse")(config)
    fresh.load_init_weights(str(path))
    for key, value in system.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
