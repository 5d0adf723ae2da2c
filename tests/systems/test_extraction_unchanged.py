"""infer.py writes the same samples before and after the extractor-protocol refactor (issue 14).

The reference outputs in tests/assets/extraction_reference.npz were written ONCE, by the code
before the refactor (``python tests/systems/test_extraction_unchanged.py --write``), from tiny
untrained checkpoints built from a fixed seed (tests/tiny_ckpt.py) and two fixed real-speech
mixtures. The test reruns the same infer.py command lines and compares sample by sample.
Regenerate the file only for a deliberate change of the outputs, and say so in the commit.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tiny_ckpt import make_checkpoint  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402

ASSETS = HERE.parent / "assets"
REFERENCE = ASSETS / "extraction_reference.npz"
SR = 8000

# case name -> (checkpoint kind, refiner kind | None, extra infer.py arguments, batch size)
CASES = {
    "tsb": ("tsb", None, [], 1),
    "tsb_b2": ("tsb", None, [], 2),
    "ddtse_K2": ("ddtse", None, ["--K", "2"], 1),
    "ddtse_K2_b2": ("ddtse", None, ["--K", "2"], 2),
    "ddtse_config": ("ddtse", None, ["--seed", "7"], 1),
    "sgmse_N2": ("sgmse", None, ["--N", "2", "--snr", "0.3"], 1),
    "tsb+ddtse": ("tsb", "ddtse", ["--t_start", "0.5", "--K", "1"], 1),
}


def _inputs(root: Path) -> Path:
    """Two 0.6 s mixtures of real speech (8 kHz) with enrollments, and a list over them."""
    a, _ = sf.read(ASSETS / "arctic_a0007_male.wav", dtype="float32")
    b, _ = sf.read(ASSETS / "arctic_a0009_female.wav", dtype="float32")
    a, b = a[::2], b[::2]  # 16 kHz -> 8 kHz (every other sample: fixed, no resampler involved)
    n = int(0.6 * SR)
    rows = ["id,mixture,enrollment"]
    for k, (tgt, itf, off) in enumerate(((a, b, 4000), (b, a, 6000))):
        mix = 0.5 * tgt[off : off + n] + 0.4 * itf[off + 1000 : off + 1000 + n]
        sf.write(root / f"mix{k}.wav", mix, SR, subtype="FLOAT")
        sf.write(root / f"enr{k}.wav", tgt[off + n : off + n + SR], SR, subtype="FLOAT")
        rows.append(f"item{k},mix{k}.wav,enr{k}.wav")
    (root / "items.csv").write_text("\n".join(rows) + "\n")
    return root / "items.csv"


def run_cases(root: Path) -> dict[str, np.ndarray]:
    """Run every case's infer.py command under ``root``; -> {f"{case}/{item}": samples}."""
    ckpts = {kind: str(make_checkpoint(root / f"{kind}.ckpt", kind, sr=SR, seed=0)) for kind in ("tsb", "ddtse", "sgmse")}
    items = _inputs(root)
    out: dict[str, np.ndarray] = {}
    for case, (kind, refiner, extra, batch) in CASES.items():
        out_dir = root / "out" / case
        argv = ["--ckpt", ckpts[kind], "--list", str(items), "--out_dir", str(out_dir),
                "--batch_size", str(batch), "--device", "cpu", "--quiet", *extra]
        if refiner:
            argv += ["--refine_ckpt", ckpts[refiner]]
        code = run_cli(infer_main, argv)
        assert code == 0, f"{case}: infer.py exited {code}"
        for k in range(2):
            out[f"{case}/item{k}"] = sf.read(out_dir / f"item{k}.wav", dtype="float32")[0]
    return out


@pytest.mark.usefixtures("one_thread")
def test_infer_outputs_match_the_reference(tmp_path):
    assert REFERENCE.is_file(), f"{REFERENCE} is missing (it is written once, before a refactor)"
    ref = dict(np.load(REFERENCE))
    got = run_cases(tmp_path)
    assert sorted(got) == sorted(ref)
    for key in ref:
        assert got[key].shape == ref[key].shape, key
        # same machine, same code path: bit-identical; the tolerance only absorbs BLAS differences
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/systems/test_extraction_unchanged.py --write  (rewrites the reference)")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = run_cases(Path(tmp))
    np.savez_compressed(REFERENCE, **outputs)
    print(f"wrote {REFERENCE} ({len(outputs)} arrays)")
