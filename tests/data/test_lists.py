"""WSJ0-2mix-extr lists: generation and the on-the-fly dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_helpers import RATE
from ddtse.cli.prepare import make_extr_lists_main
from ddtse.data.lists import items_from_extraction_list
from ddtse.data.lists import ExtrListDataset, make_extr_lines
from ddtse.errors import DdtseError


def power_db(x):
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


def test_make_lines_deterministic_and_valid(speaker_folder):
    a = make_extr_lines(str(speaker_folder), 20, speaker_folder, seed=3)
    assert a == make_extr_lines(str(speaker_folder), 20, speaker_folder, seed=3)
    assert a != make_extr_lines(str(speaker_folder), 20, speaker_folder, seed=4)
    for line in a:
        target, snr, interferer, neg, enrollment = line.split()
        assert float(neg) == -float(snr) and 0 <= float(snr) <= 2.5
        spk = lambda p: Path(p).parts[0]  # noqa: E731
        assert spk(target) == spk(enrollment) and target != enrollment and spk(interferer) != spk(target)
        assert not Path(target).is_absolute() and (speaker_folder / target).is_file()


def test_dataset_mixes_at_listed_snrs(speaker_folder, tmp_path):
    path = tmp_path / "mix_2_spk_tt_extr.txt"
    assert make_extr_lists_main(["--source", str(speaker_folder), "--output", str(path), "--num", "6",
                                 "--seed", "1"]) == 0
    ds = ExtrListDataset(sample_rate=RATE, list=str(path), root=str(speaker_folder))
    entries = items_from_extraction_list(path, speaker_folder)
    for i, entry in enumerate(entries):
        item = ds[i]
        interferer = item["mixture"] - item["target"]
        # WSJ0-2mix convention: relative level = SNR1 - SNR2 = 2 * SNR
        assert power_db(item["target"]) - power_db(interferer) == pytest.approx(
            entry.snrs[0] - entry.snrs[1], abs=0.02)
        assert np.max(np.abs(item["mixture"])) == pytest.approx(0.9, abs=1e-5)
        assert item["id"] == entry.id == (f"{entry.reference.stem}_{entry.snrs[0]:g}_{entry.interferer.stem}_"
                                          f"{entry.snrs[1]:g}")
        assert entry.mixture is None and entry.enrollment.is_file()
    tr = ExtrListDataset(sample_rate=RATE, train=True, seed=0, list=str(path), root=str(speaker_folder),
                         segment_seconds=0.3, enrollment_seconds=0.2)
    item = tr[(0, 0)]
    assert item["mixture"].shape == (2400,) and item["enrollment"].shape == (1600,)
    assert np.array_equal(item["mixture"], tr[(0, 0)]["mixture"])


def test_list_errors(speaker_folder, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a.wav 1.0 b.wav -1.0\n")
    with pytest.raises(DdtseError, match=r"bad.txt:1: expected 'target SNR interferer -SNR enrollment', got 4 fields"):
        items_from_extraction_list(bad)
    bad.write_text("a.wav x b.wav -1.0 c.wav\n")
    with pytest.raises(DdtseError, match="SNR fields must be numbers"):
        items_from_extraction_list(bad)
    bad.write_text("\n")
    with pytest.raises(DdtseError, match="extraction list is empty"):
        items_from_extraction_list(bad)
    bad.write_text("1272/101/missing.wav 1.0 2035/101/x.wav -1.0 1272/101/y.wav\n")
    ds = ExtrListDataset(sample_rate=RATE, list=str(bad), root=str(speaker_folder))
    with pytest.raises(DdtseError, match="audio file not found: .*1272/101/missing.wav"):
        ds[0]
    with pytest.raises(DdtseError, match="extr_list needs 'list'"):
        ExtrListDataset(sample_rate=RATE)


def _make_lists(argv):
    from ddtse.cli.prepare import make_extr_lists_main

    return make_extr_lists_main(argv)


def test_make_extr_lists_refuses_user_mistakes_in_one_line(speaker_folder, tmp_path, capsys):
    out = tmp_path / "lists" / "train.txt"
    base = ["--source", str(speaker_folder), "--output", str(out), "--num", "4"]
    assert _make_lists(base) == 0
    first = out.read_text()
    assert len(first.splitlines()) == 4
    capsys.readouterr()

    (tmp_path / "file").write_text("x")
    pool_csv = tmp_path / "pool.csv"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00not really a wav file")
    pool_csv.write_text(f"speaker,path\na,{corrupt}\n")
    cases = {
        "again": (base + ["--seed", "5"], "--overwrite"),
        "folder": (["--source", str(speaker_folder), "--output", str(tmp_path / "lists"), "--num", "4"], "is a folder"),
        "num0": (["--source", str(speaker_folder), "--output", str(tmp_path / "n.txt"), "--num", "0"], "--num"),
        "unwritable": (["--source", str(speaker_folder), "--output", str(tmp_path / "file" / "x.txt")], "cannot write"),
        "corrupt": (["--source", str(pool_csv), "--output", str(tmp_path / "c.txt")], "corrupt.wav"),
    }
    for name, (argv, message) in cases.items():
        assert _make_lists(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (name, err)
    assert out.read_text() == first and not (tmp_path / "n.txt").exists()
    assert _make_lists(base + ["--seed", "5", "--overwrite"]) == 0 and out.read_text() != first
