"""calc_metrics.py / ddtse.scoring: values, outputs, groups, Libri2Mix mode and every bad input."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ddtse.cli import run_cli
from ddtse.cli.score import main as score_main
from ddtse.metrics import si_sdr

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture
def folders(tmp_path, speech_pair):
    clean, noisy, sr = speech_pair
    gt, enh, mix = (tmp_path / d for d in ("gt", "enh", "mix"))
    for d in (gt, enh / "sub", mix):
        d.mkdir(parents=True)
    for name, ref, est in (("a", clean, 0.5 * clean + 0.5 * noisy), ("b", clean[::-1].copy(), clean[::-1] + 0.01)):
        sf.write(gt / f"{name}.wav", ref, sr)
        sf.write(mix / f"{name}.wav", noisy if name == "a" else ref + noisy, sr)
    sf.write(enh / "a.wav", 0.5 * clean + 0.5 * noisy, sr, subtype="FLOAT")
    sf.write(enh / "sub" / "b.wav", clean[::-1] + 0.01, sr, subtype="FLOAT")  # matched by unique name
    return gt, enh, mix, clean, noisy, sr


def score(argv):
    return run_cli(score_main, argv + ["--quiet", "--jobs", "1"])


def test_folder_mode_values_and_outputs(folders, capsys, tmp_path):
    gt, enh, mix, clean, noisy, sr = folders
    out = tmp_path / "scores"
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--mix_dir", str(mix), "--out_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| SI-SDR (dB) |" in printed and "PESQ (WB@16k)" in printed
    rows = {r.split(",")[0]: r.split(",") for r in (out / "per_utt.csv").read_text().splitlines()[1:]}
    expected_a = si_sdr(0.5 * clean + 0.5 * noisy, clean)
    assert abs(float(rows["a"][1]) - expected_a) < 1e-3
    assert abs(float(rows["a"][2]) - (expected_a - si_sdr(noisy, clean))) < 1e-3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_items"] == 2 and summary["si_sdr"]["count"] == 2
    assert summary["si_sdr"]["mean"] == pytest.approx(np.mean([float(rows["a"][1]), float(rows["b"][1])]), abs=1e-3)
    assert {"mean", "std", "ci95", "count"} <= set(summary["pesq"])
    assert "| ESTOI |" in (out / "summary.md").read_text()
    # no silent overwrite
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--out_dir", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_missing_estimate_listed_and_allow_missing(folders, capsys, tmp_path):
    gt, enh, mix, *_ = folders
    (enh / "sub" / "b.wav").unlink()
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--out_dir", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "1 estimate(s) missing" in err and "b" in err
    assert not (tmp_path / "o1").exists()
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--out_dir", str(tmp_path / "o2"),
                  "--allow_missing"]) == 0
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["n_missing"] == 1


def test_length_mismatch_rate_mismatch_and_silent_reference(tmp_path, speech_pair, capsys):
    clean, noisy, sr = speech_pair
    from ddtse.audio.io import resample

    (tmp_path / "gt").mkdir(), (tmp_path / "enh").mkdir()
    sf.write(tmp_path / "gt" / "long.wav", clean, sr)
    sf.write(tmp_path / "enh" / "long.wav", clean[:-500], sr)
    sf.write(tmp_path / "gt" / "rate.wav", clean, sr)
    sf.write(tmp_path / "enh" / "rate.wav", resample(clean, sr, 22050), 22050)
    sf.write(tmp_path / "gt" / "silent.wav", np.zeros(sr), sr)
    sf.write(tmp_path / "enh" / "silent.wav", noisy[:sr], sr)
    with pytest.warns(UserWarning, match="resampled"):
        assert score(["--gt_dir", str(tmp_path / "gt"), "--enhanced_dir", str(tmp_path / "enh"),
                      "--out_dir", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["n_trimmed"] >= 1 and summary["n_resampled"] == 1
    assert summary["pesq"]["nan_count"] == 1 and summary["pesq"]["count"] == 2
    rows = (tmp_path / "s" / "per_utt.csv").read_text().splitlines()
    silent = [r for r in rows if r.startswith("silent,")][0].split(",")
    assert silent[2] == ""  # PESQ cell empty (columns: id, si_sdr, pesq, estoi)
    rate = [r for r in rows if r.startswith("rate,")][0].split(",")
    assert float(rate[1]) > 25  # resampled estimate still matches


def test_groups_file(folders, tmp_path, capsys):
    gt, enh, mix, *_ = folders
    groups = tmp_path / "groups.txt"
    groups.write_text("a FF\nb MM\n")
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--groups", str(groups),
                  "--out_dir", str(tmp_path / "g")]) == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert set(summary["groups"]) == {"FF", "MM"} and summary["groups"]["FF"]["count"] == 1
    assert "| FF |" in capsys.readouterr().out


def test_librimix_mode_finds_reference_mixture_and_sex_groups(tmp_path, speech_pair, capsys):
    clean, noisy, sr = speech_pair
    split = tmp_path / "Libri2Mix" / "wav16k" / "min" / "test"
    meta = split.parent / "metadata"
    mid = "4077-13754-0001_5142-33396-0065"
    for d in ("s1", "s2", "mix_both", "mix_clean"):
        (split / d).mkdir(parents=True)
    meta.mkdir()
    sf.write(split / "s1" / f"{mid}.wav", clean, sr)
    sf.write(split / "s2" / f"{mid}.wav", noisy - clean, sr)
    sf.write(split / "mix_both" / f"{mid}.wav", noisy, sr)
    (meta / "libri2mix_test-clean_info.csv").write_text(
        "mixture_ID,speaker_1_ID,speaker_1_sex,speaker_2_ID,speaker_2_sex\n" f"{mid},4077,M,5142,F\n")
    enh = tmp_path / "enh"
    (enh / "s1").mkdir(parents=True)
    (enh / "s2").mkdir()
    sf.write(enh / "s1" / f"{mid}.wav", clean + 0.05 * noisy, sr)
    sf.write(enh / "s2" / f"{mid}.wav", noisy - clean, sr)
    assert score(["--librimix_split", str(split), "--enhanced_dir", str(enh), "--out_dir", str(tmp_path / "l")]) == 0
    summary = json.loads((tmp_path / "l" / "summary.json").read_text())
    assert summary["n_items"] == 2 and list(summary["groups"]) == ["FM"]
    assert summary["si_sdri"]["mean"] > 5
    (enh / "s2" / f"{mid}.wav").unlink()  # the mixture row is scored on the extracted subset only
    assert score(["--librimix_split", str(split), "--enhanced_dir", str(enh), "--score_mixture",
                  "--out_dir", str(tmp_path / "m")]) == 0
    mixture = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert mixture["n_items"] == 1 and mixture["si_sdri"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert mixture["si_sdr"]["mean"] == pytest.approx(si_sdr(noisy, clean), abs=1e-3)


@pytest.mark.parametrize("case", ["wrong_path", "empty_dir", "no_mode", "bad_metric"])
def test_bad_input_one_line(case, tmp_path, capsys, folders):
    gt, enh, *_ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = {
        "wrong_path": ["--gt_dir", str(tmp_path / "nope"), "--enhanced_dir", str(enh)],
        "empty_dir": ["--gt_dir", str(gt), "--enhanced_dir", str(empty)],
        "no_mode": ["--enhanced_dir", str(enh)],
        "bad_metric": ["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--metrics", "mos"],
    }[case]
    assert score(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_cli_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "calc_metrics.py"), "--gt_dir", str(tmp_path / "x"),
                           "--enhanced_dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "reference directory not found" in proc.stderr


def test_parallel_jobs_give_same_numbers(folders, tmp_path):
    from ddtse.scoring import pair_folders, score_items

    gt, enh, mix, *_ = folders
    items, _ = pair_folders(gt, enh, mix)
    one = score_items(items, None, jobs=1, progress=False).rows
    two = score_items(items, None, jobs=2, progress=False).rows
    for a, b in zip(one, two):
        for k in ("si_sdr", "pesq", "estoi"):
            assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k])
