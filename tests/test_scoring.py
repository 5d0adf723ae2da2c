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


def test_small_length_mismatch_trimmed_rate_mismatch_and_silent_reference(tmp_path, speech_pair, capsys):
    clean, noisy, sr = speech_pair
    from ddtse.audio.io import resample

    (tmp_path / "gt").mkdir(), (tmp_path / "enh").mkdir()
    sf.write(tmp_path / "gt" / "long.wav", clean, sr)
    sf.write(tmp_path / "enh" / "long.wav", clean[:-100], sr)  # 6.25 ms: within the 10 ms tolerance
    sf.write(tmp_path / "gt" / "rate.wav", clean, sr)
    sf.write(tmp_path / "enh" / "rate.wav", resample(clean, sr, 22050), 22050)
    sf.write(tmp_path / "gt" / "silent.wav", np.zeros(sr), sr)
    sf.write(tmp_path / "enh" / "silent.wav", noisy[:sr], sr)
    with pytest.warns(UserWarning, match="resampled"):
        assert score(["--gt_dir", str(tmp_path / "gt"), "--enhanced_dir", str(tmp_path / "enh"),
                      "--out_dir", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["n_trimmed"] >= 1 and summary["n_resampled"] == 1 and summary["n_failed"] == 0
    # a silent reference is an absent target: scored by output energy only (absent_energy_db), so its
    # SI-SDR, PESQ and ESTOI are left out rather than counted
    assert summary["pesq"]["nan_count"] == 0 and summary["pesq"]["count"] == 2
    assert summary["si_sdr"]["count"] == 2
    assert not (tmp_path / "s" / "failed.txt").exists()
    rows = (tmp_path / "s" / "per_utt.csv").read_text().splitlines()
    silent = [r for r in rows if r.startswith("silent,")][0].split(",")
    assert silent[1:4] == ["", "", ""]  # SI-SDR, PESQ, ESTOI cells empty (columns: id, si_sdr, pesq, estoi)
    rate = [r for r in rows if r.startswith("rate,")][0].split(",")
    assert float(rate[1]) > 25  # resampled estimate still matches
    long = [r for r in rows if r.startswith("long,")][0].split(",")
    assert float(long[1]) > 25


def _bad_items_folders(tmp_path, clean, noisy, sr):
    gt, enh = tmp_path / "gt", tmp_path / "enh"
    gt.mkdir(), enh.mkdir()
    for name in ("good", "short", "silent", "nan", "empty", "broken"):
        sf.write(gt / f"{name}.wav", clean, sr)
    sf.write(enh / "good.wav", 0.5 * clean + 0.5 * noisy, sr)
    sf.write(enh / "short.wav", clean[:-500], sr)  # 31 ms shorter
    sf.write(enh / "silent.wav", np.zeros_like(clean), sr)
    bad = clean.copy()
    bad[100] = np.nan
    sf.write(enh / "nan.wav", bad, sr, subtype="FLOAT")
    sf.write(enh / "empty.wav", np.zeros(0, dtype=np.float32), sr)
    (enh / "broken.wav").write_bytes(b"RIFF not really a wav file")
    return gt, enh


def test_bad_items_reported_and_the_rest_scored(tmp_path, speech_pair, capsys):
    clean, noisy, sr = speech_pair
    gt, enh = _bad_items_folders(tmp_path, clean, noisy, sr)
    out = tmp_path / "s"
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--out_dir", str(out),
                  "--metrics", "si_sdr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    failed_lines = [line for line in err if line.startswith("failed: ")]
    assert len(failed_lines) == 5 and err[-1].startswith("error: 5 of 6 item(s) could not be scored")
    why = dict(line.split("\t", 1) for line in (out / "failed.txt").read_text().splitlines())
    assert set(why) == {"short", "silent", "nan", "empty", "broken"}
    assert "31.2 ms" in why["short"] and "shorter" in why["short"]
    assert "silent" in why["silent"] and "empty" in why["empty"]
    assert "non-finite" in why["nan"] or "NaN" in why["nan"] or "nan" in why["nan"].lower()
    assert "cannot read" in why["broken"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_items"] == 1 and summary["n_failed"] == 5
    assert summary["si_sdr"]["mean"] == pytest.approx(si_sdr(0.5 * clean + 0.5 * noisy, clean), abs=1e-3)
    assert [r.split(",")[0] for r in (out / "per_utt.csv").read_text().splitlines()[1:]] == ["good"]
    # a wider tolerance scores the short estimate (trimmed); a later clean run removes failed.txt
    for name in ("silent", "nan", "empty", "broken"):
        (enh / f"{name}.wav").unlink()
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--out_dir", str(out), "--metrics", "si_sdr",
                  "--length_tolerance_ms", "40", "--allow_missing", "--overwrite"]) == 0
    assert not (out / "failed.txt").exists()
    assert json.loads((out / "summary.json").read_text())["n_trimmed"] == 1


def test_bad_items_in_parallel_workers(tmp_path, speech_pair):
    from ddtse.scoring import pair_folders, score_items

    clean, noisy, sr = speech_pair
    gt, enh = _bad_items_folders(tmp_path, clean, noisy, sr)
    items, _ = pair_folders(gt, enh)
    report = score_items(items, None, jobs=2, metrics=["si_sdr"], progress=False)
    assert [r["id"] for r in report.rows] == ["good"]
    assert sorted(i for i, _ in report.failed) == ["broken", "empty", "nan", "short", "silent"]


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
    assert score(["--split", str(split), "--enhanced_dir", str(enh), "--out_dir", str(tmp_path / "l")]) == 0
    summary = json.loads((tmp_path / "l" / "summary.json").read_text())
    assert summary["n_items"] == 2 and list(summary["groups"]) == ["FM"]
    assert summary["si_sdri"]["mean"] > 5
    (enh / "s2" / f"{mid}.wav").unlink()  # the mixture row is scored on the extracted subset only
    assert score(["--split", str(split), "--enhanced_dir", str(enh), "--score_mixture",
                  "--out_dir", str(tmp_path / "m")]) == 0
    mixture = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert mixture["n_items"] == 1 and mixture["si_sdri"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert mixture["si_sdr"]["mean"] == pytest.approx(si_sdr(noisy, clean), abs=1e-3)


@pytest.mark.parametrize("case", ["wrong_path", "empty_dir", "no_mode", "bad_metric", "spk_sim_no_ckpt",
                                  "confusion_no_interferer", "interferer_no_dir", "accepted_no_mix",
                                  "intrusive_no_reference", "missing_interferer_file", "bad_speaker_ckpt",
                                  "spk_sim_no_enrollment"])
def test_bad_input_one_line(case, tmp_path, capsys, folders):
    gt, enh, mix, *_ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--gt_dir", str(gt), "--enhanced_dir", str(enh)]
    argv, expected = {
        "wrong_path": (["--gt_dir", str(tmp_path / "nope"), "--enhanced_dir", str(enh)], "not found"),
        "empty_dir": (["--gt_dir", str(gt), "--enhanced_dir", str(empty)], "no audio files"),
        "no_mode": (["--enhanced_dir", str(enh)], "--gt_dir"),
        "bad_metric": (base + ["--metrics", "mos"], "unknown metric"),
        "spk_sim_no_ckpt": (base + ["--metrics", "spk_sim", "--enroll_dir", str(gt)], "--speaker_ckpt"),
        "confusion_no_interferer": (base + ["--metrics", "si_sdr,confusion"], "--interferer_dir"),
        "interferer_no_dir": (base + ["--metrics", "si_sdr_interferer"], "--interferer_dir"),
        "accepted_no_mix": (base + ["--metrics", "accepted"], "--mix_dir"),
        "intrusive_no_reference": (["--enhanced_dir", str(enh), "--metrics", "dnsmos_ovrl,pesq"], "--gt_dir"),
        "missing_interferer_file": (base + ["--metrics", "confusion", "--interferer_dir", str(empty)],
                                    "no interferer file"),
        "bad_speaker_ckpt": (base + ["--metrics", "spk_sim", "--enroll_dir", str(gt), "--speaker_ckpt",
                                     str(gt / "a.wav")], "cannot read checkpoint"),
        "spk_sim_no_enrollment": (base + ["--metrics", "spk_sim", "--speaker_ckpt", str(gt / "a.wav")],
                                  "--enroll_dir"),
    }[case]
    assert score(argv + ["--out_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()


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


# -- target selection: SI-SDR to the interferer, confusion, acceptance ---------------------------
MIXTURES = ("100-1-0001_200-2-0001", "100-1-0002_200-2-0002")


@pytest.fixture
def libri2mix_split(tmp_path, assets):
    """A two-mixture Libri2Mix-layout split of real voices (s1 male, s2 female), with info CSV and
    enrollment map; returns (split, {mixture_ID: (s1, s2, mixture)})."""
    male, sr = sf.read(assets / "arctic_a0007_male.wav", dtype="float32")
    female, _ = sf.read(assets / "arctic_a0009_female.wav", dtype="float32")
    other, _ = sf.read(assets / "pesq_speech.wav", dtype="float32")
    split = tmp_path / "Libri2Mix" / "wav16k" / "min" / "test"
    for d in ("s1", "s2", "mix_both"):
        (split / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    sources = {}
    for mid, s1, s2 in ((MIXTURES[0], male, female), (MIXTURES[1], male[::-1].copy(), other)):
        n = min(len(s1), len(s2))
        s1, s2 = s1[:n], 0.7 * s2[:n]
        mixture = s1 + s2 + 0.01 * rng.standard_normal(n).astype(np.float32)
        for d, wav in (("s1", s1), ("s2", s2), ("mix_both", mixture)):
            sf.write(split / d / f"{mid}.wav", wav, sr, subtype="FLOAT")
        sources[mid] = (s1, s2, mixture)
    meta = split.parent / "metadata"
    meta.mkdir()
    (meta / "libri2mix_test-clean_info.csv").write_text(
        "mixture_ID,speaker_1_ID,speaker_1_sex,speaker_2_ID,speaker_2_sex\n"
        + "".join(f"{mid},100,M,200,F\n" for mid in MIXTURES))
    a, b = MIXTURES
    (split / "map_mixture2enrollment").write_text(
        f"{a} 100-1-0001 s1/{b}\n{a} 200-2-0001 s2/{b}\n{b} 100-1-0002 s1/{a}\n{b} 200-2-0002 s2/{a}\n")
    return split, sources


def _write_estimates(root, sources, swap: bool):
    for k in (1, 2):
        (root / f"s{k}").mkdir(parents=True, exist_ok=True)
        for mid, (s1, s2, _) in sources.items():
            wav = (s2 if k == 1 else s1) if swap else (s1 if k == 1 else s2)
            sf.write(root / f"s{k}" / f"{mid}.wav", wav, 16000, subtype="FLOAT")


SELECTION = "si_sdr,si_sdri,si_sdr_interferer,selected,confusion,accepted"


@pytest.mark.parametrize("swap", [True, False])
def test_librimix_confusion_and_acceptance(swap, libri2mix_split, tmp_path, capsys):
    """Estimates that follow the other speaker: confusion 1, accepted 0; the true sources: 0 and 1."""
    split, sources = libri2mix_split
    enh = tmp_path / "enh"
    _write_estimates(enh, sources, swap)
    out = tmp_path / "scores"
    assert score(["--split", str(split), "--enhanced_dir", str(enh), "--metrics", SELECTION,
                  "--out_dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_items"] == 4
    assert summary["confusion"]["mean"] == (1.0 if swap else 0.0)
    assert summary["accepted"]["mean"] == (0.0 if swap else 1.0)
    assert summary["selected"]["mean"] == (0.0 if swap else 1.0)
    assert summary["groups"]["FM"]["confusion"] == (1.0 if swap else 0.0)
    assert summary["groups"]["FM"]["accepted"] == (0.0 if swap else 1.0)
    header, *lines = (out / "per_utt.csv").read_text().splitlines()
    assert header == "id,group," + SELECTION
    rows = {line.split(",")[0]: dict(zip(header.split(","), line.split(","))) for line in lines}
    s1, s2, mixture = sources[MIXTURES[0]]
    row = rows[f"s1/{MIXTURES[0]}"]
    estimate = s2 if swap else s1
    assert float(row["si_sdr"]) == pytest.approx(si_sdr(estimate, s1), abs=1e-2)
    assert float(row["si_sdr_interferer"]) == pytest.approx(si_sdr(estimate, s2), abs=1e-2)
    assert float(row["si_sdri"]) == pytest.approx(si_sdr(estimate, s1) - si_sdr(mixture, s1), abs=1e-2)
    printed = capsys.readouterr().out
    assert "| confusion rate |" in printed and "| acceptance rate (SI-SDRi > 1 dB) |" in printed


def test_librimix_mixture_row_has_selection_metrics(libri2mix_split, tmp_path):
    split, sources = libri2mix_split
    out = tmp_path / "mixture"
    assert score(["--split", str(split), "--score_mixture", "--metrics", SELECTION, "--out_dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"]["mean"] == 0.0  # SI-SDRi of the mixture is 0 dB
    s1, s2, mixture = sources[MIXTURES[0]]
    expected = np.mean([float(si_sdr(m, b) > si_sdr(m, a)) for a, b, m in sources.values()]
                       + [float(si_sdr(m, a) > si_sdr(m, b)) for a, b, m in sources.values()])
    assert summary["confusion"]["mean"] == pytest.approx(expected)
    assert summary["confusion"]["count"] == 4


def test_folder_mode_interferer_dir(tmp_path, libri2mix_split):
    """--interferer_dir is matched by name like --gt_dir."""
    split, sources = libri2mix_split
    gt, inter, enh = tmp_path / "gt", tmp_path / "int", tmp_path / "enh"
    for d in (gt, inter, enh):
        d.mkdir()
    for i, (s1, s2, _) in enumerate(sources.values()):
        sf.write(gt / f"u{i}.wav", s1, 16000, subtype="FLOAT")
        sf.write(inter / f"u{i}.wav", s2, 16000, subtype="FLOAT")
        sf.write(enh / f"u{i}.wav", s2 if i == 0 else s1 + 0.01 * s2, 16000, subtype="FLOAT")
    out = tmp_path / "s"
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--interferer_dir", str(inter),
                  "--metrics", "si_sdr,si_sdr_interferer,confusion", "--out_dir", str(out)]) == 0
    rows = {r.split(",")[0]: r.split(",") for r in (out / "per_utt.csv").read_text().splitlines()[1:]}
    assert rows["u0"][3] == "1.0" and rows["u1"][3] == "0.0"
    assert float(rows["u1"][2]) == pytest.approx(si_sdr(list(sources.values())[1][0] + 0.01 * list(sources.values())[1][1],
                                                        list(sources.values())[1][1]), abs=1e-2)


# -- speaker similarity -------------------------------------------------------------------------
@pytest.fixture
def ddtse_ckpt(tmp_path):
    """A tiny DDTSE checkpoint (4 kHz speaker encoder) whose trained and EMA speaker weights differ."""
    import torch

    from ddtse.registry import SYSTEMS

    backbone = {"name": "ncsnpp", "in_channels": 2, "out_channels": 2, "nf": 16, "ch_mult": [1, 2, 2],
                "num_res_blocks": 1, "attn_resolutions": [], "bottleneck_attention": True,
                "time_conditional": False, "bottleneck_fusion": True}
    speaker = {"name": "spectral_speaker_encoder", "emb_dim": 32, "sample_rate": 4000, "n_fft": 128,
               "win_length": 100, "hop_length": 40, "n_mels": 20, "channels": 32, "layers": 2}
    config = {"seed": 0, "data": {"sample_rate": 4000},
              "model": {"name": "ddtse_net", "backbone": backbone, "speaker": speaker},
              "system": {"name": "ddtse", "lr": 1e-3, "ema_decay": 0.999, "stage": 1}, "sampler": {"K": 2}}
    torch.manual_seed(0)
    system = SYSTEMS.get("ddtse")(config)
    with torch.no_grad():
        for p in system.model.speaker.parameters():
            p.add_(0.5 * torch.randn_like(p))
    path = tmp_path / "ddtse.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": {"config": config},
                "ddtse_system": "ddtse"}, path)
    return path, system.ema_model.speaker.eval()


def _embed(module, wav):
    import torch

    from ddtse.audio.io import resample

    x = torch.from_numpy(resample(wav, 16000, 4000))[None]
    with torch.no_grad():
        return module(x, torch.tensor([x.shape[-1]]))[0].numpy()


def test_spk_sim_librimix_uses_map_and_ema_encoder(libri2mix_split, ddtse_ckpt, tmp_path):
    split, sources = libri2mix_split
    ckpt, ema_speaker = ddtse_ckpt
    enh = tmp_path / "enh"
    _write_estimates(enh, sources, swap=True)
    out = tmp_path / "s"
    assert score(["--split", str(split), "--enhanced_dir", str(enh), "--metrics", "si_sdr,spk_sim",
                  "--speaker_ckpt", str(ckpt), "--out_dir", str(out)]) == 0
    rows = {r.split(",")[0]: r.split(",") for r in (out / "per_utt.csv").read_text().splitlines()[1:]}
    a, b = MIXTURES
    estimate = sources[a][1]  # s1/a was given a's s2 source; its enrollment is s1/b
    e, r = _embed(ema_speaker, estimate), _embed(ema_speaker, sources[b][0])
    expected = float(e @ r / np.linalg.norm(e) / np.linalg.norm(r))
    assert float(rows[f"s1/{a}"][3]) == pytest.approx(expected, abs=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spk_sim"]["count"] == 4 and "spk_sim" in summary["groups"]["FM"]


def test_spk_sim_folder_mode_enroll_dir_and_parallel(tmp_path, ddtse_ckpt, assets):
    from ddtse.scoring import pair_folders, score_items

    ckpt, _ = ddtse_ckpt
    enh, enr = tmp_path / "enh", tmp_path / "enr"
    enh.mkdir(), enr.mkdir()
    male, sr = sf.read(assets / "arctic_a0007_male.wav", dtype="float32")
    female, _ = sf.read(assets / "arctic_a0009_female.wav", dtype="float32")
    for name, est, enrol in (("same", male, male), ("other", male, female)):
        sf.write(enh / f"{name}.wav", est, sr)
        sf.write(enr / f"{name}.wav", enrol, sr)
    # non-intrusive: no --gt_dir needed
    assert score(["--enhanced_dir", str(enh), "--enroll_dir", str(enr), "--metrics", "spk_sim",
                  "--speaker_ckpt", str(ckpt), "--out_dir", str(tmp_path / "s")]) == 0
    rows = dict(r.split(",") for r in (tmp_path / "s" / "per_utt.csv").read_text().splitlines()[1:])
    assert float(rows["same"]) == pytest.approx(1.0, abs=1e-5) and float(rows["other"]) < 0.9999
    items, _ = pair_folders(None, enh, enroll_dir=enr)
    two = score_items(items, None, jobs=2, metrics=["spk_sim"], speaker_ckpt=ckpt, progress=False).rows
    assert {r["id"]: r["spk_sim"] for r in two} == pytest.approx({k: float(v) for k, v in rows.items()}, abs=1e-5)


def test_speaker_ckpt_without_encoder_is_refused(tmp_path, folders, capsys):
    import torch

    gt, enh, *_ = folders
    path = tmp_path / "sgmse.ckpt"
    config = {"model": {"name": "ncsnpp"}, "data": {"sample_rate": 16000}}
    torch.save({"state_dict": {}, "hyper_parameters": {"config": config}, "ddtse_system": "nonexistent"}, path)
    assert score(["--gt_dir", str(gt), "--enhanced_dir", str(enh), "--enroll_dir", str(gt), "--metrics", "spk_sim",
                  "--speaker_ckpt", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


# -- DNSMOS ---------------------------------------------------------------------------------------
def test_dnsmos_without_reference_matches_speechmos_in_one_and_two_jobs(tmp_path, assets):
    """Folder mode with only --enhanced_dir scores DNSMOS; the values are speechmos's own."""
    import shutil

    from speechmos import dnsmos as package

    from ddtse.scoring import pair_folders, score_items

    enh = tmp_path / "enh"
    enh.mkdir()
    for name in ("pesq_speech.wav", "pesq_speech_bab_0dB.wav"):
        shutil.copy(assets / name, enh / name)
    metrics = "dnsmos_sig,dnsmos_bak,dnsmos_ovrl,dnsmos_p808"
    out = tmp_path / "s"
    assert score(["--enhanced_dir", str(enh), "--metrics", metrics, "--out_dir", str(out)]) == 0
    header, *lines = (out / "per_utt.csv").read_text().splitlines()
    assert header == "id," + metrics
    rows = {line.split(",")[0]: [float(v) for v in line.split(",")[1:]] for line in lines}
    for name in rows:
        theirs = package.run(str(enh / f"{name}.wav"), 16000)
        assert rows[name] == pytest.approx([theirs[k] for k in ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos")], abs=1e-6)
    assert rows["pesq_speech"][2] == pytest.approx(3.25, abs=0.01)
    assert rows["pesq_speech_bab_0dB"][2] == pytest.approx(1.09, abs=0.01)
    items, _ = pair_folders(None, enh)
    two = score_items(items, None, jobs=2, metrics=metrics.split(","), progress=False).rows
    assert {r["id"]: r["dnsmos_ovrl"] for r in two} == pytest.approx({k: v[2] for k, v in rows.items()}, abs=1e-6)


def test_spk_sim_librimix_without_map_is_one_line(libri2mix_split, tmp_path, capsys):
    split, sources = libri2mix_split
    (split / "map_mixture2enrollment").unlink()
    enh = tmp_path / "enh"
    _write_estimates(enh, sources, swap=False)
    assert score(["--split", str(split), "--enhanced_dir", str(enh), "--metrics", "spk_sim",
                  "--speaker_ckpt", "x.ckpt", "--out_dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--enrollment_map" in err[0]
