"""Export (ddtse/export.py, `ddtse export`): ONNX and TorchScript files of every discriminative model type
give the checkpoint's output to 1e-4 on real speech, at any batch and length; `infer.py --ckpt F.onnx`
writes the checkpoint's samples; the file carries the protocol; mistakes are one line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_ckpt import make_checkpoint  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.export import main as export_main  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402
from ddtse.errors import DdtseError  # noqa: E402
from ddtse.export import OnnxExtractor, export_extractor, load_extractor  # noqa: E402
from ddtse.extract import ExtractionInput, Extractor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ASSETS = Path(__file__).parent / "assets"
KINDS = ["tsb", "tsb_asa", "tsb_asa_mp", "tsb_ipd", "tsb_speaker", "tsb_ecapa", "dptnet"]
SR = 8000


@pytest.fixture(scope="module")
def speech():
    """Two real-speech mixtures (8 kHz, 1.3 s and 0.9 s; two channels) and enrollments of their targets."""
    a, _ = sf.read(ASSETS / "arctic_a0007_male.wav", dtype="float32")
    b, _ = sf.read(ASSETS / "arctic_a0009_female.wav", dtype="float32")
    a, b = a[::2], b[::2]
    out = []
    for tgt, itf, n in ((a, b, 10400), (b, a, 7200)):
        mono = 0.6 * tgt[2000 : 2000 + n] + 0.4 * itf[3000 : 3000 + n]
        stereo = np.stack([mono, 0.6 * tgt[2003 : 2003 + n] + 0.4 * itf[2998 : 2998 + n]])
        out.append((stereo, tgt[-8000:]))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    files = {}
    for kind in KINDS:
        ckpt = make_checkpoint(root / f"{kind}.ckpt", kind, sr=SR)
        files[kind] = {"ckpt": ckpt}
        for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
            files[kind][fmt] = root / f"{kind}{suffix}"
            export_extractor(ckpt, fmt, files[kind][fmt])
    return files


def _inputs(speech, kind):
    channels = 2 if kind == "tsb_ipd" else 1
    return [ExtractionInput(mix[:channels], enr, SR, f"item{k}") for k, (mix, enr) in enumerate(speech)]


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_equals_the_checkpoint_on_real_speech(exported, speech, kind):
    """Batched (padded: two lengths, two enrollment lengths) and one at a time, through the one inference path."""
    ckpt, onnx = Extractor.load(exported[kind]["ckpt"], "cpu"), OnnxExtractor(exported[kind]["onnx"])
    assert (onnx.sample_rate, onnx.in_channels, onnx.min_samples, onnx.needs_enrollment) == \
           (ckpt.sample_rate, ckpt.in_channels, ckpt.min_samples, ckpt.needs_enrollment)
    inputs = _inputs(speech, kind)
    if not ckpt.needs_enrollment:
        inputs = [ExtractionInput(x.mixture, None, SR, x.id) for x in inputs]
    for batch_size in (1, 2):
        want = ckpt.extract_many(inputs, batch_size=batch_size)
        got = onnx.extract_many(inputs, batch_size=batch_size)
        for (w, _), (g, info) in zip(want, got):
            assert g.shape == w.shape and info["nfe"] == 1
            assert np.abs(w).max() > 1e-3  # a real output, not silence
            np.testing.assert_allclose(g, w, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_torchscript_equals_the_checkpoint(exported, speech, kind):
    ckpt = Extractor.load(exported[kind]["ckpt"], "cpu")
    extra = {"ddtse.json": ""}
    module = torch.jit.load(str(exported[kind]["torchscript"]), _extra_files=extra)
    meta = json.loads(extra["ddtse.json"])
    assert meta["sample_rate"] == SR and meta["needs_enrollment"] == ckpt.needs_enrollment
    mix, enr = speech[1]
    mixture = torch.from_numpy(mix[: ckpt.in_channels])[None]
    args = [mixture, torch.tensor([mixture.shape[-1]])]
    if meta["needs_enrollment"]:
        args += [torch.from_numpy(enr)[None], torch.tensor([enr.shape[-1]])]
    with torch.no_grad():
        got = module(*args)[0].numpy()
    want, _ = ckpt.extract(mix[: ckpt.in_channels], enr if ckpt.needs_enrollment else None, SR)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("kind", ["tsb", "dptnet"])
def test_infer_with_an_onnx_file_writes_the_checkpoints_samples(exported, speech, tmp_path, kind):
    rows = ["id,mixture,enrollment"]
    for k, (mix, enr) in enumerate(speech):
        sf.write(tmp_path / f"mix{k}.wav", mix[0], 16000, subtype="FLOAT")  # another rate: resampled both ways
        sf.write(tmp_path / f"enr{k}.wav", enr, SR, subtype="FLOAT")
        rows.append(f"item{k},mix{k}.wav,enr{k}.wav")
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    outs = {}
    for source in ("ckpt", "onnx"):
        out = tmp_path / source
        argv = ["--ckpt", str(exported[kind][source]), "--list", str(tmp_path / "items.csv"), "--out_dir", str(out),
                "--batch_size", "2", "--device", "cpu", "--quiet", "--chunk_seconds", "0.5", "--overlap_seconds", "0.1"]
        assert run_cli(infer_main, argv) == 0
        outs[source] = [sf.read(out / f"item{k}.wav", dtype="float32")[0] for k in range(2)]
        assert json.loads((out / "inference.json").read_text())["model"].startswith("discriminative")
    for want, got in zip(outs["ckpt"], outs["onnx"]):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_command_and_its_mistakes(exported, tmp_path, capsys):
    ckpt = exported["tsb"]["ckpt"]
    out = tmp_path / "m.onnx"
    assert run_cli(export_main, ["--ckpt", str(ckpt), "--format", "onnx", "--output", str(out)]) == 0
    assert "inputs mixture, lengths, enrollment, enrollment_lengths" in capsys.readouterr().out
    assert load_extractor(out).name == "discriminative:onnx"
    before = out.read_bytes()
    assert run_cli(export_main, ["--ckpt", str(ckpt), "--format", "onnx", "--output", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    diffusion = make_checkpoint(tmp_path / "ddtse.ckpt", "ddtse", sr=SR)
    assert run_cli(export_main, ["--ckpt", str(diffusion), "--format", "onnx", "--output", str(tmp_path / "d.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'ddtse' checkpoint cannot be exported" in err
    assert not (tmp_path / "d.onnx").exists() and not list(tmp_path.glob(".*tmp"))
    with pytest.raises(DdtseError, match="ONNX file not found"):
        OnnxExtractor(tmp_path / "nope.onnx")
    with pytest.raises(DdtseError, match="ONNX models run on the CPU"):
        OnnxExtractor(out, device="cuda")
    with pytest.raises(DdtseError, match="takes no sampler options, got K"):
        OnnxExtractor(out).validate_options({"K": 3, "seed": 1})
