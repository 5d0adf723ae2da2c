"""Item sources (issue 24): one registry behind infer, score, report and evaluate.

- a new format in one module of its own (plugin_source.py) works through infer and score;
- the list round trip: ``infer.py --list items.csv`` then ``calc_metrics.py --list items.csv``
  scores the same file by id, with the selection metrics when an ``interferer`` column is there;
- the door refuses bad requests in one line."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tiny_ckpt import make_checkpoint  # noqa: E402

from ddtse.cli import run_cli  # noqa: E402
from ddtse.cli.infer import main as infer_main  # noqa: E402
from ddtse.cli.score import main as score_main  # noqa: E402

ASSETS = HERE.parent / "assets"
SR = 8000
SELECTION = "si_sdr,si_sdri,si_sdr_interferer,selected,confusion"


def _si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """SI-SDR in dB written out: zero-mean, project the estimate on the reference."""
    est, ref = est.astype(np.float64) - est.mean(), ref.astype(np.float64) - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10((target @ target) / ((est - target) @ (est - target))))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two 0.6 s mixtures of real speech at 8 kHz with references, interferers and enrollments, and a
    tiny untrained TD-SpeakerBeam checkpoint."""
    root = tmp_path_factory.mktemp("sources")
    a, _ = sf.read(ASSETS / "arctic_a0007_male.wav", dtype="float32")
    b, _ = sf.read(ASSETS / "arctic_a0009_female.wav", dtype="float32")
    a, b = a[::2], b[::2]
    n = int(0.6 * SR)
    rows = []
    for k, (tgt, itf, off) in enumerate(((a, b, 4000), (b, a, 6000))):
        ref, inter = 0.5 * tgt[off: off + n], 0.4 * itf[off + 1000: off + 1000 + n]
        for name, wav in (("ref", ref), ("int", inter), ("mix", ref + inter), ("enr", tgt[off + n: off + n + SR])):
            sf.write(root / f"{name}{k}.wav", wav, SR, subtype="FLOAT")
        rows.append({"id": f"item{k}", "mixture": f"mix{k}.wav", "enrollment": f"enr{k}.wav",
                     "reference": f"ref{k}.wav", "interferer": f"int{k}.wav"})
    ckpt = make_checkpoint(root / "tsb.ckpt", "tsb", sr=SR, seed=0)
    return root, rows, ckpt


def _write_csv(path: Path, rows: list[dict], columns) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _per_utt(out: Path) -> dict[str, dict]:
    with open(out / "per_utt.csv") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def _check_scores(root: Path, rows: list[dict], enhanced: Path, scores: Path) -> None:
    """Scores equal the hand-computed SI-SDR of each estimate against its reference and interferer."""
    got = _per_utt(scores)
    assert sorted(got) == [r["id"] for r in rows]
    for r in rows:
        est, _ = sf.read(enhanced / f"{r['id']}.wav", dtype="float32")
        ref, _ = sf.read(root / r["reference"], dtype="float32")
        inter, _ = sf.read(root / r["interferer"], dtype="float32")
        mix, _ = sf.read(root / r["mixture"], dtype="float32")
        s_t, s_i = _si_sdr(est, ref), _si_sdr(est, inter)
        row = got[r["id"]]
        # (an untrained model's estimate sits near -40 dB, where the metric's epsilon shows)
        assert float(row["si_sdr"]) == pytest.approx(s_t, rel=1e-3, abs=1e-3)
        assert float(row["si_sdri"]) == pytest.approx(s_t - _si_sdr(mix, ref), rel=1e-3, abs=1e-3)
        assert float(row["si_sdr_interferer"]) == pytest.approx(s_i, rel=1e-3, abs=1e-3)
        assert float(row["selected"]) == float(s_t > s_i + 1.0)
        assert float(row["confusion"]) == float(s_i > s_t)


def test_list_round_trip_infer_then_score(corpus, tmp_path, capsys):
    root, rows, ckpt = corpus
    items = _write_csv(root / "items.csv", rows, rows[0])
    out = tmp_path / "out"
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--list", str(items), "--out_dir", str(out), "--quiet"]) == 0
    scores = tmp_path / "scores"
    assert run_cli(score_main, ["--list", str(items), "--enhanced_dir", str(out), "--metrics", SELECTION,
                                "--out_dir", str(scores), "--jobs", "1", "--quiet"]) == 0
    _check_scores(root, rows, out, scores)
    summary = json.loads((scores / "summary.json").read_text())
    assert summary["n_items"] == 2 and summary["n_missing"] == 0

    # estimates of known quality, matched by id: the target plus a little of the interferer is selected
    known = tmp_path / "known"
    known.mkdir()
    for r in rows:
        ref, _ = sf.read(root / r["reference"], dtype="float32")
        inter, _ = sf.read(root / r["interferer"], dtype="float32")
        sf.write(known / f"{r['id']}.wav", ref + 0.1 * inter, SR, subtype="FLOAT")
    assert run_cli(score_main, ["--list", str(items), "--enhanced_dir", str(known), "--metrics", SELECTION,
                                "--out_dir", str(tmp_path / "known_scores"), "--jobs", "1", "--quiet"]) == 0
    _check_scores(root, rows, known, tmp_path / "known_scores")
    assert all(r["selected"] == "1.0" and r["confusion"] == "0.0" for r in _per_utt(tmp_path / "known_scores").values())

    # a missing estimate is reported as for any source: refused, or scored without with --allow_missing
    (out / "item1.wav").unlink()
    capsys.readouterr()
    assert run_cli(score_main, ["--list", str(items), "--enhanced_dir", str(out), "--metrics", "si_sdr",
                                "--out_dir", str(tmp_path / "s2"), "--jobs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "1 estimate(s) missing: item1" in err and "--allow_missing" in err
    assert run_cli(score_main, ["--list", str(items), "--enhanced_dir", str(out), "--metrics", "si_sdr",
                                "--out_dir", str(tmp_path / "s3"), "--jobs", "1", "--quiet", "--allow_missing"]) == 0
    assert sorted(_per_utt(tmp_path / "s3")) == ["item0"]


def test_selection_metrics_need_the_interferer_column(corpus, tmp_path, capsys):
    root, rows, ckpt = corpus
    items = _write_csv(root / "no_interferer.csv", rows, ("id", "mixture", "enrollment", "reference"))
    out = tmp_path / "out"
    out.mkdir()
    for r in rows:  # any audio named by id will do: the request is refused before scoring
        sf.write(out / f"{r['id']}.wav", np.zeros(10, np.float32) + 0.1, SR)
    assert run_cli(score_main, ["--list", str(items), "--enhanced_dir", str(out), "--metrics", SELECTION,
                                "--out_dir", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interferer column in --list" in err[0]


def test_a_new_format_is_one_module(corpus, tmp_path):
    """plugin_source.py registers 'jsonl' by being imported; no other file knows it."""
    root, rows, ckpt = corpus
    import plugin_source  # noqa: F401  (registers the source)

    manifest = root / "items.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    source = ["--source", "jsonl", "--source_opt", f"path={manifest}"]
    assert run_cli(infer_main, ["--ckpt", str(ckpt), *source, "--out_dir", str(out), "--quiet"]) == 0
    for r in rows:
        est, sr = sf.read(out / f"{r['id']}.wav", dtype="float32")
        assert sr == SR and est.shape == (int(0.6 * SR),) and np.abs(est).max() > 0
    # the same items as a list give the same samples (one inference path, whatever the source)
    listed = tmp_path / "listed"
    items = _write_csv(root / "items_again.csv", rows, rows[0])
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--list", str(items), "--out_dir", str(listed), "--quiet"]) == 0
    for r in rows:
        np.testing.assert_array_equal(sf.read(out / f"{r['id']}.wav")[0], sf.read(listed / f"{r['id']}.wav")[0])
    scores = tmp_path / "scores"
    assert run_cli(score_main, [*source, "--enhanced_dir", str(out), "--metrics", SELECTION,
                                "--out_dir", str(scores), "--jobs", "1", "--quiet"]) == 0
    _check_scores(root, rows, out, scores)


@pytest.mark.parametrize("argv,message", [
    (["--list", "a.csv", "--split", "S"], "give exactly one input (source of items), got --split and --list"),
    (["--source", "nosuch"], "unknown item source 'nosuch' (known: extr_list, folder, folders, "),
    (["--source", "list", "--source_opt", "path=a.csv", "--source_opt", "root=x"],
     "source 'list' takes no --source_opt root (its options: path)"),
    (["--list", "a.csv", "--enrollment_map", "M"], "source 'list' takes no --enrollment_map (its options: path)"),
    (["--source", "list"], "source 'list' needs path (--source_opt path=...)"),
    (["--source", "librimix", "--source_opt", "split_dir=S", "--source_opt", "enrollments=maybe"],
     "source 'librimix' option enrollments=maybe: enrollments takes a bool"),
    (["--source_opt", "path=a.csv"], "--source_opt needs --source NAME"),
    (["--source", "list", "--source_opt", "path"], "--source_opt takes KEY=VALUE, got 'path'"),
])
def test_bad_requests_are_one_line(tmp_path, capsys, argv, message):
    assert run_cli(infer_main, ["--ckpt", "c.ckpt", *argv, "--out_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_every_builtin_source_is_registered_by_its_module():
    from ddtse.data import items, librimix, lists
    from ddtse.registry import SOURCES

    assert {n: SOURCES.get(n) for n in ("pair", "folder", "list", "folders", "librimix", "extr_list")} == {
        "pair": items.items_from_pair, "folder": items.items_from_folder, "list": items.items_from_list,
        "folders": items.items_from_folders, "librimix": librimix.items_from_librimix,
        "extr_list": lists.items_from_extraction_list}


def test_extraction_list_round_trip(corpus, tmp_path):
    """extr_list items have no mixture file: infer mixes them as the extr_list dataset does (min
    length), and score measures against the sources as mixed."""
    from ddtse.data.lists import mix_at_snrs

    root, rows, ckpt = corpus
    long_ref = root / "ref_long.wav"  # a target longer than its interferer: mode min cuts it
    sf.write(long_ref, np.concatenate([sf.read(root / "ref0.wav", dtype="float32")[0]] * 2), SR, subtype="FLOAT")
    lst = root / "extr.txt"
    lst.write_text("ref_long.wav 2.5 int0.wav -2.5 enr0.wav\nref1.wav 0 int1.wav 0 enr1.wav\n")
    out = tmp_path / "out"
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--extr_list", str(lst), "--out_dir", str(out), "--quiet"]) == 0
    ids = sorted(p.stem for p in out.glob("*.wav"))
    assert ids == ["ref1_0_int1_0", "ref_long_2.5_int0_-2.5"]
    assert sf.read(out / "ref_long_2.5_int0_-2.5.wav")[0].shape == (int(0.6 * SR),)  # min(2 x 0.6 s, 0.6 s)

    known = tmp_path / "known"  # estimates of known quality: the rendered target
    known.mkdir()
    for item_id, (ref, snr1, itf, snr2) in {"ref_long_2.5_int0_-2.5": (long_ref, 2.5, root / "int0.wav", -2.5),
                                             "ref1_0_int1_0": (root / "ref1.wav", 0.0, root / "int1.wav", 0.0)}.items():
        mix, target = mix_at_snrs(sf.read(ref, dtype="float32")[0], snr1, sf.read(itf, dtype="float32")[0], snr2)
        sf.write(known / f"{item_id}.wav", target + 0.1 * (mix - target), SR, subtype="FLOAT")
    scores = tmp_path / "scores"
    assert run_cli(score_main, ["--extr_list", str(lst), "--enhanced_dir", str(known), "--metrics", SELECTION,
                                "--out_dir", str(scores), "--jobs", "1", "--quiet"]) == 0
    for row in _per_utt(scores).values():  # estimate = target + 0.1 interferer: SI-SDR = SIR + 20 dB
        assert float(row["selected"]) == 1.0 and float(row["si_sdri"]) == pytest.approx(20.0, abs=0.5)


def test_evaluate_and_report_take_the_same_items(corpus, tmp_path):
    """evaluate --list extracts and scores by id (= infer then score); report --list plots them."""
    from ddtse.cli.evaluate import main as evaluate_main
    from ddtse.cli.report import main as report_main

    root, rows, ckpt = corpus
    items = _write_csv(root / "items_eval.csv", rows, rows[0])
    exp = tmp_path / "exp"
    assert run_cli(evaluate_main, ["--ckpt", str(ckpt), "--list", str(items), "--out_dir", str(exp / "eval"),
                                   "--metrics", SELECTION]) == 0
    _check_scores(root, rows, exp / "eval" / "extracted", exp / "eval")
    out = tmp_path / "infer"
    assert run_cli(infer_main, ["--ckpt", str(ckpt), "--list", str(items), "--out_dir", str(out), "--quiet"]) == 0
    for r in rows:  # the same path as infer.py (seed 100 both ways)
        np.testing.assert_array_equal(sf.read(out / f"{r['id']}.wav")[0],
                                      sf.read(exp / "eval" / "extracted" / f"{r['id']}.wav")[0])
    assert run_cli(report_main, ["--exp_dir", str(exp), "--row", "tsb|eval|eval/extracted", "--list", str(items),
                                 "--plots", "1"]) == 0
    assert sorted(p.name for p in (exp / "plots").glob("*.png")) == ["item0.png"]
    assert "| tsb |" in (exp / "RESULTS.md").read_text()
