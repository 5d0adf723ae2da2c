"""infer.py / slicer.py over batches with bad items (issue 15): every good item written at its input's
length, every bad one reported (stderr line, failed.txt, inference.json), exit 2 at the end; --resume;
ids kept inside the output folder; one clear line for user mistakes; per-item sampling noise."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_ckpt import make_checkpoint  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402
from ddtse.diffusion.samplers import ItemNoise, item_seed  # noqa: E402
from ddtse.data.items import items_from_list  # noqa: E402
from ddtse.inference import id_problem  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {kind: str(make_checkpoint(root / f"{kind}.ckpt", kind)) for kind in ("tsb", "ddtse", "sgmse")}


def _noise(n, sr, seed=0, channels=1):
    x = 0.1 * np.random.default_rng(seed).standard_normal((n, channels)).astype(np.float32)
    return x[:, 0] if channels == 1 else x


@pytest.fixture
def files(tmp_path):
    """A folder of inputs, good and bad, and a list over them."""
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "good.wav", _noise(8000, 8000, 1), 8000)
    sf.write(d / "good2.wav", _noise(6000, 16000, 2), 16000)
    sf.write(d / "short.wav", _noise(109, 16000, 3), 16000)  # the 109-sample file of the report
    nan = _noise(4000, 8000, 4)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 8000, subtype="FLOAT")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 8000)
    sf.write(d / "enr.wav", _noise(16000, 16000, 5), 16000)
    sf.write(d / "enr_1.wav", _noise(1, 16000, 6), 16000)
    sf.write(d / "enr_005.wav", _noise(800, 16000, 7), 16000)
    sf.write(d / "enr_zero.wav", np.zeros(16000, np.float32), 16000)
    return d


def _infer(argv, capsys):
    """(exit code, stderr lines) of infer.py in-process; any exception other than SystemExit fails the test."""
    code = run_cli(infer_main, argv + ["--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def _list(path: Path, rows, header="id,mixture,enrollment", encoding="utf-8"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding=encoding)
    return path


BAD_ROWS = {  # id -> (row, words of its one-line report)
    "c": ("c,nan.wav,enr.wav", "NaN"),
    "e": ("e,empty.wav,enr.wav", "empty"),
    "m": ("m,missing.wav,enr.wav", "not found"),
    "../../escape": ("../../escape,good.wav,enr.wav", "'..'"),
    "/abs/x": ("/abs/x,good.wav,enr.wav", "absolute"),
    "x/../../y": ("x/../../y,good.wav,enr.wav", "'..'"),
    "one": ("one,good.wav,enr_1.wav", "enrollment too short"),
    "tiny": ("tiny,good.wav,enr_005.wav", "enrollment too short"),
    "zero": ("zero,good.wav,enr_zero.wav", "enrollment is silent"),
}
GOOD_ROWS = {"a": ("a,good.wav,enr.wav", "good.wav"), "b": ("b,short.wav,enr.wav", "short.wav"),
             "sub/g": ("sub/g,good2.wav,enr.wav", "good2.wav")}


@pytest.mark.parametrize("kind,batch", [("tsb", 1), ("tsb", 3), ("ddtse", 3)])
def test_list_with_bad_items_writes_the_good_and_reports_the_bad(ckpts, files, tmp_path, capsys, kind, batch):
    rows = [GOOD_ROWS["a"][0], BAD_ROWS["c"][0], GOOD_ROWS["b"][0]] + [r for r, _ in BAD_ROWS.values()
                                                                       if not r.startswith("c,")] + [GOOD_ROWS["sub/g"][0]]
    lst = _list(files / "list.csv", rows)
    out = tmp_path / "deep" / "out"
    code, err = _infer(["--ckpt", ckpts[kind], "--list", str(lst), "--out_dir", str(out), "--batch_size", str(batch)],
                       capsys)
    assert code == 2
    for item_id, (_, src) in GOOD_ROWS.items():  # every good item, at its input's length
        assert sf.info(out / f"{item_id}.wav").frames == sf.info(files / src).frames, item_id
    failed_txt = (out / "failed.txt").read_text().splitlines()
    assert len(failed_txt) == len(BAD_ROWS)
    summary = json.loads((out / "inference.json").read_text())
    assert summary["written"] == len(GOOD_ROWS) and len(summary["failed"]) == len(BAD_ROWS)
    for item_id, (_, words) in BAD_ROWS.items():
        lines = [line for line in err if line.startswith(f"failed: {item_id}: ")]
        assert len(lines) == 1 and words in lines[0], (item_id, err)
        assert any(line.startswith(item_id + "\t") and words in line for line in failed_txt)
        assert any(f["id"] == item_id and words in f["reason"] for f in summary["failed"])
    assert "failed.txt" in err[-1] and "9 of 12" in err[-1]
    # nothing outside the output folder, nothing but the outputs inside it
    assert not (tmp_path / "escape.wav").exists() and not (out.parent.parent / "escape.wav").exists()
    assert not list(tmp_path.rglob("*escape*")) and not list(tmp_path.rglob("abs"))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["a.wav", "b.wav", "failed.txt", "inference.json", "sub/g.wav"]


def test_resume_does_only_the_missing_items(ckpts, files, tmp_path, capsys):
    lst = _list(files / "list.csv", [GOOD_ROWS["a"][0], BAD_ROWS["c"][0], GOOD_ROWS["b"][0]])
    out = tmp_path / "out"
    argv = ["--ckpt", ckpts["tsb"], "--list", str(lst), "--out_dir", str(out)]
    assert _infer(argv, capsys)[0] == 2
    assert (out / "a.wav").is_file() and (out / "b.wav").is_file() and (out / "failed.txt").is_file()
    os.utime(out / "a.wav", (1, 1))
    sf.write(files / "nan.wav", _noise(4000, 8000, 9), 8000)  # the user fixes the bad file
    code, err = _infer(argv, capsys)  # a plain rerun still refuses to overwrite, and says how to resume
    assert code == 2 and len(err) == 1 and "--resume" in err[0]
    (out / "b.wav").write_bytes(b"RIFF")  # an unreadable output counts as not done
    code, err = _infer(argv + ["--resume"], capsys)
    assert code == 0 and err == []
    assert os.stat(out / "a.wav").st_mtime == 1  # kept, not redone
    assert sf.info(out / "c.wav").frames == 4000 and sf.info(out / "b.wav").frames == 109
    assert not (out / "failed.txt").exists()
    assert json.loads((out / "inference.json").read_text())["skipped_existing"] == 1


def test_folder_and_split_modes_survive_bad_files(ckpts, files, tmp_path, capsys):
    d = tmp_path / "mixtures"
    d.mkdir()
    for name in ("good.wav", "short.wav", "nan.wav", "empty.wav"):
        (d / name).write_bytes((files / name).read_bytes())
    (d / "corrupt.wav").write_bytes(b"not audio at all")
    code, err = _infer(["--ckpt", ckpts["tsb"], "--input_dir", str(d), "--enrollment", str(files / "enr.wav"),
                        "--out_dir", str(tmp_path / "o"), "--batch_size", "2"], capsys)
    assert code == 2 and sum(line.startswith("failed: ") for line in err) == 3
    assert sf.info(tmp_path / "o" / "short.wav").frames == 109 and (tmp_path / "o" / "good.wav").is_file()


@pytest.mark.parametrize("kind", ["tsb", "ddtse", "sgmse"])
def test_inputs_shorter_than_the_model_minimum_are_padded_and_cropped(ckpts, files, tmp_path, capsys, kind):
    for n, sr in ((1, 16000), (5, 8000), (109, 16000), (200, 48000)):
        sf.write(tmp_path / "m.wav", _noise(n, sr), sr)
        out = tmp_path / f"o{n}.wav"
        code, err = _infer(["--ckpt", ckpts[kind], "--mixture", str(tmp_path / "m.wav"), "--enrollment",
                            str(files / "enr.wav"), "--output", str(out)], capsys)
        assert code == 0, err
        assert sf.info(out).frames == n and sf.info(out).samplerate == sr


def test_user_mistakes_are_one_line(ckpts, files, tmp_path, capsys, monkeypatch):
    mix, enr = str(files / "good.wav"), str(files / "enr.wav")
    lst = str(_list(files / "list.csv", [GOOD_ROWS["a"][0], GOOD_ROWS["b"][0]]))
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder").mkdir()
    one = ["--ckpt", ckpts["tsb"], "--mixture", mix, "--enrollment", enr]
    many = ["--ckpt", ckpts["tsb"], "--list", lst, "--out_dir", str(tmp_path / "l")]
    cases = {
        "unwritable out_dir": (["--ckpt", ckpts["tsb"], "--list", lst, "--out_dir", str(tmp_path / "a_file" / "o")],
                               "cannot write"),
        "output is a folder": (one + ["--output", str(tmp_path / "folder"), "--overwrite"], "names a folder"),
        "output is a folder/": (one + ["--output", str(tmp_path / "new") + "/", "--overwrite"], "names a folder"),
        "tiny chunks": (one + ["--output", str(tmp_path / "c.wav"), "--chunk_seconds", "0.001"], "--chunk_seconds"),
        "tiny chunks, no overlap": (["--ckpt", ckpts["ddtse"]] + one[2:] + ["--output", str(tmp_path / "c.wav"),
                                    "--chunk_seconds", "0.001", "--overlap_seconds", "0"], "minimum input"),
        "zero chunks": (one + ["--output", str(tmp_path / "c.wav"), "--chunk_seconds", "0"], "must be > 0"),
        "negative overlap": (one + ["--output", str(tmp_path / "c.wav"), "--chunk_seconds", "1",
                                    "--overlap_seconds", "-1"], "--overlap_seconds"),
        "limit -1": (many + ["--limit", "-1"], "--limit must be >= 1"),
        "limit 0": (many + ["--limit", "0"], "--limit must be >= 1"),
        "batch_size 0": (many + ["--batch_size", "0"], "--batch_size must be >= 1"),
        "min enrollment < 0": (many + ["--min_enrollment_seconds", "-1"], "--min_enrollment_seconds"),
        "resume and overwrite": (many + ["--resume", "--overwrite"], "give one"),
        "unknown device": (one + ["--output", str(tmp_path / "d.wav"), "--device", "tpu9"], "unknown device"),
        "one file, short enrollment": (["--ckpt", ckpts["tsb"], "--mixture", mix, "--enrollment",
                                        str(files / "enr_005.wav"), "--output", str(tmp_path / "e.wav")],
                                       "enrollment too short"),
        "one file, silent enrollment": (["--ckpt", ckpts["tsb"], "--mixture", mix, "--enrollment",
                                         str(files / "enr_zero.wav"), "--output", str(tmp_path / "e.wav")],
                                        "enrollment is silent"),
        "one file, NaN": (["--ckpt", ckpts["tsb"], "--mixture", str(files / "nan.wav"), "--enrollment", enr,
                           "--output", str(tmp_path / "e.wav")], "NaN"),
    }
    for name, (argv, words) in cases.items():
        code, err = _infer(argv, capsys)
        assert code == 2 and len(err) == 1 and words in err[0], (name, err)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _infer(one + ["--output", str(tmp_path / "d.wav"), "--device", "cuda"], capsys)
    assert code == 2 and len(err) == 1 and "CUDA is not available" in err[0]
    assert not (tmp_path / "c.wav").exists() and not (tmp_path / "e.wav").exists()
    assert not (tmp_path / "d.wav").exists() and not (tmp_path / "l").exists()
    assert not [p for p in tmp_path.rglob(".tmp_*")]  # no half-written files anywhere


def test_min_enrollment_seconds_is_configurable(ckpts, files, tmp_path, capsys):
    argv = ["--ckpt", ckpts["tsb"], "--mixture", str(files / "good.wav"), "--enrollment", str(files / "enr_005.wav"),
            "--output", str(tmp_path / "o.wav"), "--min_enrollment_seconds", "0.01"]
    assert _infer(argv, capsys)[0] == 0 and sf.info(tmp_path / "o.wav").frames == 8000


def test_list_whitespace_blank_lines_and_bom(files, tmp_path):
    lst = _list(tmp_path / "l.csv", ["  a  ,  in/good.wav  , in/enr.wav ", "   ", "", "\t", " b,in/short.wav,"],
                header=" id , mixture ,enrollment ", encoding="utf-8-sig")
    (tmp_path / "in").mkdir(exist_ok=True)
    items = items_from_list(lst)
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].mixture == tmp_path / "in" / "good.wav" and items[0].enrollment == tmp_path / "in" / "enr.wav"
    assert items[1].enrollment is None and all(i.problem is None for i in items)
    tsv = tmp_path / "l.tsv"
    tsv.write_bytes("\ufeffid\tmixture\n a \t x.wav \n \t \nb\t\n".encode("utf-8"))
    items = items_from_list(tsv)
    assert [i.id for i in items] == ["a", "b"] and items[1].problem == "list line 4 has no mixture"


def test_id_rules():
    for good in ("a", "spk/a", "a.b", "s1/mix_001-x"):
        assert id_problem(good) is None, good
    for bad in ("", "  ", "/x", "../x", "a/../../x", "a/..", "C:/x", "\\\\host\\x", "a//b", "./a", "a\nb", "..\\x"):
        assert id_problem(bad) is not None, bad


def test_outputs_respect_the_umask(ckpts, files, tmp_path, capsys):
    old = os.umask(0o002)
    try:
        assert _infer(["--ckpt", ckpts["tsb"], "--mixture", str(files / "good.wav"), "--enrollment",
                       str(files / "enr.wav"), "--output", str(tmp_path / "o.wav")], capsys)[0] == 0
        assert (tmp_path / "o.wav").stat().st_mode & 0o777 == 0o664
        assert (tmp_path / "inference.json").stat().st_mode & 0o777 == 0o664
        os.umask(0o077)
        from ddtse.audio.io import save_audio

        save_audio(tmp_path / "p.wav", np.zeros(10, np.float32), 8000)
        assert (tmp_path / "p.wav").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_slicer_survives_bad_files(files, tmp_path, capsys):
    from ddtse.cli.slicer import main as slicer_main

    d = tmp_path / "rec"
    d.mkdir()
    speech = np.concatenate([_noise(16000, 8000), np.zeros(8000, np.float32), _noise(16000, 8000)])
    sf.write(d / "long.wav", speech, 8000)
    for name in ("nan.wav", "empty.wav"):
        (d / name).write_bytes((files / name).read_bytes())
    code = run_cli(slicer_main, [str(d), str(tmp_path / "missing.wav"), "--out_dir", str(tmp_path / "clips")])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and "3 input(s) failed" in err
    assert list((tmp_path / "clips").glob("long_*.wav"))
    assert len((tmp_path / "clips" / "failed.txt").read_text().splitlines()) == 3
    assert out.count("failed: ") == 3


# -- per-item sampling noise ---------------------------------------------------------------------

def test_item_noise_depends_only_on_seed_id_and_own_frames():
    a = ItemNoise(100, ["x", "y"], frames=[8, 12]).randn_like(torch.zeros(2, 1, 4, 16, dtype=torch.complex64))
    b = ItemNoise(100, ["y"], frames=[12]).randn_like(torch.zeros(1, 1, 4, 12, dtype=torch.complex64))
    c = ItemNoise(100, ["z", "x"]).randn_like(torch.zeros(2, 1, 4, 8, dtype=torch.complex64))
    assert torch.equal(a[1, ..., :12], b[0]) and torch.equal(a[0, ..., :8], c[1])
    assert torch.all(a[0, ..., 8:] == 0) and not torch.equal(c[0], c[1])
    assert item_seed(100, "x") == item_seed(100, "x") != item_seed(101, "x")
    assert item_seed(100, "x") == 0x4ee03868c3a22126  # stable across processes (sha256, not hash())


@pytest.mark.parametrize("kind", ["ddtse", "sgmse"])
def test_seeded_outputs_do_not_depend_on_batch_size_or_order(ckpts, tmp_path, capsys, kind):
    d = tmp_path / "in"
    d.mkdir()
    rows = []
    for k in range(3):
        sf.write(d / f"m{k}.wav", _noise(2400, 8000, 10 + k), 8000)
        sf.write(d / f"e{k}.wav", _noise(8000, 8000, 20 + k), 8000)
        rows.append(f"u{k},m{k}.wav,e{k}.wav")
    forward, backward = _list(d / "f.csv", rows), _list(d / "b.csv", rows[::-1])
    runs = {}
    for name, lst, batch in (("b1", forward, 1), ("b3", forward, 3), ("b3_reversed", backward, 3)):
        out = tmp_path / name
        assert _infer(["--ckpt", ckpts[kind], "--list", str(lst), "--out_dir", str(out), "--batch_size", str(batch),
                       "--seed", "100"], capsys)[0] == 0
        runs[name] = {k: sf.read(out / f"u{k}.wav", dtype="float32")[0] for k in range(3)}
    for k in range(3):  # the untrained net is only mildly noise-sensitive: tolerance relative to the peak
        tol = 1e-4 * np.abs(runs["b1"][k]).max()
        assert np.abs(runs["b3"][k] - runs["b1"][k]).max() <= tol, k
        assert np.abs(runs["b3_reversed"][k] - runs["b1"][k]).max() <= tol, k
    out = tmp_path / "seed7"  # and the seed still matters
    assert _infer(["--ckpt", ckpts[kind], "--list", str(forward), "--out_dir", str(out), "--seed", "7"], capsys)[0] == 0
    assert not np.allclose(sf.read(out / "u0.wav", dtype="float32")[0], runs["b1"][0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("chain", [False, True])
def test_chains_and_chunks_batch_through_the_one_path(ckpts, chain, monkeypatch):
    """extract_many batches every kind of extractor: a chain and chunked inputs reach the network as
    batches of ``batch_size`` (counted), and the estimates equal those of one input at a time."""
    from ddtse.extract import ChainExtractor, ExtractionInput, Extractor

    tsb, ddtse = Extractor.load(ckpts["tsb"], "cpu"), Extractor.load(ckpts["ddtse"], "cpu")
    extractor = ChainExtractor(tsb, ddtse, t_start=0.5) if chain else tsb
    sizes = []
    for ex in {id(tsb): tsb, id(ddtse): ddtse}.values():
        real = ex.extract_batch
        monkeypatch.setattr(ex, "extract_batch",
                            lambda batch, _real=real, **o: (sizes.append(batch["mixture"].shape[0]), _real(batch, **o))[1])
    rng = np.random.default_rng(0)
    enrollment = 0.1 * rng.standard_normal(8000).astype(np.float32)
    lengths = (4000, 4000, 5000, 25000)  # three whole inputs and one of 5 chunks (0.8 s, 0.2 s overlap)
    inputs = [ExtractionInput(0.1 * rng.standard_normal(n).astype(np.float32), enrollment, 8000, f"item{k}")
              for k, n in enumerate(lengths)]
    opts = dict(chunk_seconds=0.8, overlap_seconds=0.2, K=1) if chain else dict(chunk_seconds=0.8, overlap_seconds=0.2)
    together = extractor.extract_many(inputs, batch_size=2, **opts)
    batched_sizes, sizes[:] = list(sizes), []
    alone = [extractor.extract_many([x], batch_size=1, **opts)[0] for x in inputs]
    per_stage = [2, 1, 2, 2, 1]  # whole: (item0, item1), (item2); chunks of item3: 2, 2, then the last alone
    assert batched_sizes == (per_stage * 2 if chain else per_stage)
    assert set(sizes) == {1}
    for (a, info_a), (b, info_b), n in zip(together, alone, lengths):
        assert a.shape == b.shape == (n,)
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert info_a["nfe"] == info_b["nfe"] >= (2 if chain else 1) and info_a["seconds"] > 0
