"""Libri2Mix TSE loader on a tree with real dev IDs (see conftest.py)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_helpers import RATE, SPEAKER_FREQ, dominant_frequency, subset_rows
from ddtse.cli.prepare import prepare_libri2mix_main
from ddtse.data.base import speaker_of
from ddtse.data.librimix import items_from_librimix
from ddtse.data.librimix import (
    MAP_NAME,
    Libri2MixDataset,
    enrollment_problem,
    librimix_split_paths,
    make_enrollment_map,
    read_enrollment_map,
)
from ddtse.errors import DdtseError

N_MIX = len(subset_rows())


def write_map(split_dir: Path, seed: int = 0) -> Path:
    lines, problems = make_enrollment_map(librimix_split_paths(split_dir, "mix_both"), seed)
    assert not problems
    (split_dir / MAP_NAME).write_text("\n".join(lines) + "\n")
    return split_dir / MAP_NAME


def dev(root, **kw):
    kw.setdefault("train", False)
    return Libri2MixDataset(sample_rate=RATE, root=str(root), split="dev", **kw)


def target_utt(item_id: str) -> str:
    k, mid = item_id.split("/")
    return mid.split("_")[int(k[1]) - 1]


def enrol_utt(path: str) -> str:
    p = Path(path)
    return p.stem.split("_")[int(p.parent.name[1]) - 1]


def test_paths_resolve_inside_tree_and_references(librimix_root):
    split_dir = librimix_root / "wav8k/min/dev"
    records = librimix_split_paths(split_dir, "mix_both")
    assert [r.mixture_id for r in records] == [r["mixture_ID"] for r in subset_rows()]
    for r in records:  # the CSV holds /home/generator/... paths that do not exist here
        assert r.mixture_path == str(split_dir / "mix_both" / f"{r.mixture_id}.wav")
        assert r.noise_path == str(split_dir / "noise" / f"{r.mixture_id}.wav")
        assert sf.info(r.source_paths[1]).frames == r.length
    items = items_from_librimix(split_dir, "mix_clean", enrollments=False)
    assert len(items) == 2 * N_MIX
    mid = records[0].mixture_id
    refs = {item.id: item for item in items}
    assert refs[f"s2/{mid}"].reference == split_dir / "s2" / f"{mid}.wav"
    assert refs[f"s2/{mid}"].interferer == split_dir / "s1" / f"{mid}.wav"
    assert refs[f"s2/{mid}"].mixture == split_dir / "mix_clean" / f"{mid}.wav"
    assert [i.id for i in items[:2]] == [f"s1/{mid}", f"s2/{mid}"]


def test_eval_items_use_map_and_groups(librimix_root):
    write_map(librimix_root / "wav8k/min/dev", seed=3)
    ds = dev(librimix_root)
    assert len(ds) == 2 * N_MIX
    ids = [ds.item_id(i) for i in range(len(ds))]
    assert ids[:2] == [f"s1/{subset_rows()[0]['mixture_ID']}", f"s2/{subset_rows()[0]['mixture_ID']}"]
    groups = {}
    for i in range(len(ds)):
        item = ds[i]
        utt, enrol = target_utt(item["id"]), enrol_utt(item["enrollment_path"])
        assert enrol != utt and speaker_of(enrol) == speaker_of(utt)
        assert abs(dominant_frequency(item["enrollment"]) - SPEAKER_FREQ[speaker_of(utt)]) < 10
        assert item["mixture"].shape == item["target"].shape  # full length
        groups[item["id"].split("/")[1]] = item["group"]
    assert sorted(set(groups.values())) == ["FF", "FM"]
    assert list(groups.values()).count("FF") == 2


def test_training_enrollment_is_another_utterance_of_same_speaker(librimix_root):
    ds = dev(librimix_root, train=True, segment_seconds=0.5, enrollment_seconds=0.3)
    seen = set()
    for epoch in range(3):
        for i in range(len(ds)):
            item = ds[(i, epoch)]
            utt, enrol = target_utt(item["id"]), enrol_utt(item["enrollment_path"])
            assert enrol != utt and speaker_of(enrol) == speaker_of(utt)
            assert item["mixture"].shape == (4000,) and item["target"].shape == (4000,)
            assert item["enrollment"].shape == (2400,)
            assert ds.speakers[item["speaker_index"]] == speaker_of(utt)
            seen.add((item["id"], enrol))
    assert len(seen) > len(ds)  # enrollment is redrawn across epochs
    a, b = ds[(5, 1)], ds[(5, 1)]
    assert np.array_equal(a["mixture"], b["mixture"]) and a["enrollment_path"] == b["enrollment_path"]


def test_training_crop_is_aligned_and_pads_short_items(librimix_root):
    ds = dev(librimix_root, train=True, segment_seconds=2.0)
    item = ds[(0, 0)]
    n = ds.records[0].length
    assert item["mixture"].shape == (16000,) and np.all(item["mixture"][n:] == 0)
    ds = dev(librimix_root, train=True, segment_seconds=0.2, mixture_type="mix_clean")
    item = ds[(2, 0)]  # s1 of mixture 1: mix_clean - s1 must equal s2 over the same window
    resid = item["mixture"] - item["target"]
    assert abs(dominant_frequency(resid) - SPEAKER_FREQ[speaker_of(ds.records[1].utterances[1])]) < 50


def test_enrollment_map_deterministic_and_valid(librimix_root):
    records = librimix_split_paths(librimix_root / "wav8k/min/dev", "mix_both")
    a, _ = make_enrollment_map(records, seed=1)
    b, _ = make_enrollment_map(records, seed=1)
    c, _ = make_enrollment_map(records, seed=2)
    assert a == b and a != c and len(a) == 2 * N_MIX
    entries = read_enrollment_map_lines(a, librimix_root)
    assert all(enrollment_problem(m, k, j, o) is None for (m, k), (j, o) in entries.items())


def read_enrollment_map_lines(lines, tmp):
    path = Path(tmp) / "map_tmp"
    path.write_text("\n".join(lines))
    return read_enrollment_map(path)


def test_moved_tree_still_loads(librimix_root, tmp_path):
    write_map(librimix_root / "wav8k/min/dev")
    moved = tmp_path / "elsewhere" / "L2M"
    shutil.move(str(librimix_root), str(moved))
    ds = dev(moved)
    item = ds[1]
    mid = subset_rows()[0]["mixture_ID"]
    assert item["id"] == f"s2/{mid}"
    expected, _ = sf.read(moved / "wav8k/min/dev/mix_both" / f"{mid}.wav", dtype="float32")
    assert np.array_equal(item["mixture"], expected)
    assert item["enrollment_path"].startswith(str(moved))


def test_wesep_enroll_files_accepted(librimix_root, tmp_path):
    split_dir = librimix_root / "wav8k/min/dev"
    sb = read_enrollment_map(write_map(split_dir, seed=5))
    (split_dir / MAP_NAME).unlink()
    wesep = tmp_path / "wesep"
    wesep.mkdir()
    for k in (1, 2):
        lines = [f"{m} s{j}/{o}.wav" for (m, kk), (j, o) in sb.items() if kk == k]
        (wesep / f"spk{k}.enroll").write_text("\n".join(lines) + "\n")
    assert read_enrollment_map(wesep) == sb
    ds = dev(librimix_root, enrollment_map=str(wesep))
    assert len(ds) == 2 * N_MIX


def test_resample_to_other_rate_or_refuse(librimix_root):
    write_map(librimix_root / "wav8k/min/dev")
    ds = Libri2MixDataset(sample_rate=16000, root=str(librimix_root), split="dev")
    item = ds[0]
    assert item["mixture"].shape[0] == 2 * ds.records[0].length
    with pytest.raises(DdtseError, match="at another rate .*resample: true"):
        Libri2MixDataset(sample_rate=16000, root=str(librimix_root), split="dev", resample=False)


# ----------------------------------------------------------------------------- bad inputs
def test_missing_map_is_named(librimix_root):
    with pytest.raises(DdtseError, match="no enrollment map .*map_mixture2enrollment.*prepare_libri2mix"):
        dev(librimix_root)


def test_map_with_wrong_speaker_is_refused(librimix_root):
    split_dir = librimix_root / "wav8k/min/dev"
    lines = write_map(split_dir).read_text().splitlines()
    mid, utt, _ = lines[0].split()
    other = next(line.split()[0] for line in lines if speaker_of(line.split()[1]) != speaker_of(utt))
    j = 1 if speaker_of(other.split("_")[0]) != speaker_of(utt) else 2
    lines[0] = f"{mid} {utt} s{j}/{other}"
    (split_dir / MAP_NAME).write_text("\n".join(lines))
    with pytest.raises(DdtseError, match=f"{mid} s1: enrollment .* is speaker"):
        dev(librimix_root)


def test_map_line_format_errors(tmp_path):
    bad = tmp_path / "map"
    bad.write_text("a_b a\n")
    with pytest.raises(DdtseError, match=r"map:1: expected 'mixture_ID target_utt_ID"):
        read_enrollment_map(bad)
    bad.write_text("a_b c s1/x_y\n")
    with pytest.raises(DdtseError, match="target c is not part of mixture a_b"):
        read_enrollment_map(bad)


def test_missing_csv_column_is_named(librimix_root):
    csv_path = librimix_root / "wav8k/min/metadata/mixture_dev_mix_both.csv"
    rows = list(csv.DictReader(open(csv_path)))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["mixture_ID", "mixture_path", "source_1_path", "length"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DdtseError, match=r"mixture_dev_mix_both.csv lacks column\(s\) source_2_path, noise_path"):
        dev(librimix_root, train=True)


def test_empty_csv_refused(librimix_root):
    csv_path = librimix_root / "wav8k/min/metadata/mixture_dev_mix_both.csv"
    csv_path.write_text(csv_path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DdtseError, match="metadata CSV has no rows"):
        dev(librimix_root, train=True)


def test_missing_audio_file_is_named(librimix_root):
    write_map(librimix_root / "wav8k/min/dev")
    ds = dev(librimix_root)
    gone = Path(ds.records[0].source_paths[0])
    gone.unlink()
    with pytest.raises(DdtseError, match=f"audio file not found: {gone}"):
        ds[0]


def test_stereo_file_refused(librimix_root):
    write_map(librimix_root / "wav8k/min/dev")
    ds = dev(librimix_root)
    path = ds.records[0].mixture_path
    sf.write(path, np.zeros((ds.records[0].length, 2), np.float32), RATE)
    with pytest.raises(DdtseError, match=f"{path} has 2 channels; a mono file is required"):
        ds[0]


def test_too_short_enrollment(librimix_root):
    write_map(librimix_root / "wav8k/min/dev")
    ds = dev(librimix_root, min_enrollment_seconds=0.65)
    with pytest.raises(DdtseError, match=r"enrollment too short for item s\d/.*\(0\.\d\d s < min_enrollment_seconds 0\.65 s\)"):
        for i in range(len(ds)):
            ds[i]
    # training draws only long-enough enrollments
    tr = dev(librimix_root, train=True, min_enrollment_seconds=0.55)
    for i in range(len(tr)):
        assert tr[(i, 0)]["enrollment"].shape[0] >= 0.55 * RATE


def test_missing_split_named(librimix_root):
    with pytest.raises(DdtseError, match="Libri2Mix split folder not found: .*wav8k/min/test"):
        Libri2MixDataset(sample_rate=RATE, root=str(librimix_root), split="test")


# ----------------------------------------------------------------------------- prepare script
def test_prepare_writes_lists_and_deterministic_maps(librimix_root, tmp_path, capsys):
    out1, out2 = tmp_path / "lists1", tmp_path / "lists2"
    args = ["--root", str(librimix_root), "--sample_rate", "8000", "--split", "dev", "--types", "mix_both",
            "mix_clean"]
    assert prepare_libri2mix_main(args + ["--out_dir", str(out1), "--seed", "7"]) == 0
    assert prepare_libri2mix_main(args + ["--out_dir", str(out2), "--seed", "7"]) == 0
    map1 = (out1 / "dev" / MAP_NAME).read_text()
    assert map1 == (out2 / "dev" / MAP_NAME).read_text() and len(map1.splitlines()) == 2 * N_MIX
    ds = Libri2MixDataset(sample_rate=RATE, root=str(librimix_root), split="dev", lists_dir=str(out1))
    assert len(ds) == 2 * N_MIX and ds[0]["enrollment_path"].startswith(str(librimix_root))


def test_prepare_reports_broken_tree(librimix_root, tmp_path, capsys):
    split_dir = librimix_root / "wav8k/min/dev"
    mids = [r["mixture_ID"] for r in subset_rows()]
    (split_dir / "s2" / f"{mids[0]}.wav").unlink()
    sf.write(split_dir / "s1" / f"{mids[1]}.wav", np.zeros(100, np.float32), 16000)
    code = prepare_libri2mix_main(["--root", str(librimix_root), "--sample_rate", "8000", "--split", "dev",
                                   "--out_dir", str(tmp_path / "o")])
    out = capsys.readouterr()
    assert code == 1
    assert f"missing file: {split_dir / 's2' / mids[0]}.wav" in out.out
    assert f"{split_dir / 's1' / mids[1]}.wav: 16000 Hz, expected 8000 Hz" in out.out
    assert f"{split_dir / 's2'}: {N_MIX - 1} files on disk, {N_MIX} in the metadata" in out.out


def test_prepare_user_error_exit_2(tmp_path, capsys):
    assert prepare_libri2mix_main(["--root", str(tmp_path / "nope"), "--out_dir", str(tmp_path / "o")]) == 2
    assert "error: Libri2Mix root not found" in capsys.readouterr().err


def _point_metadata_at(root: Path, target_root: Path) -> None:
    """Rewrite the metadata CSVs of ``root`` to hold the absolute paths of ``target_root`` (the generator's)."""
    for csv_path in (root / "wav8k/min/metadata").glob("mixture_*.csv"):
        text = csv_path.read_text().replace("/home/generator/LibriMix/Libri2Mix", str(target_root))
        csv_path.write_text(text)


def test_copied_tree_reads_its_own_files_while_the_original_exists(librimix_root, tmp_path):
    """Metadata holding the original's absolute paths: a copy still reads inside itself (README promise)."""
    _point_metadata_at(librimix_root, librimix_root)
    write_map(librimix_root / "wav8k/min/dev")
    copy = tmp_path / "copy" / "Libri2Mix"
    shutil.copytree(librimix_root, copy)
    mid = subset_rows()[0]["mixture_ID"]
    mix_path = copy / "wav8k/min/dev/mix_both" / f"{mid}.wav"
    wav, _ = sf.read(mix_path, dtype="float32")
    sf.write(mix_path, 0.5 * wav, RATE, subtype="FLOAT")  # the copy differs from the original
    records = librimix_split_paths(copy / "wav8k/min/dev", "mix_both")
    assert all(r.mixture_path.startswith(str(copy)) and r.source_paths[0].startswith(str(copy)) for r in records)
    item = dev(copy)[0]
    assert np.array_equal(item["mixture"], 0.5 * wav) and item["enrollment_path"].startswith(str(copy))
    # a metadata path the tree does not have is used as written
    assert librimix_split_paths(librimix_root / "wav8k/min/dev")[0].mixture_path.startswith(str(librimix_root))


def test_prepare_flags_nan_audio(librimix_root, tmp_path, capsys):
    split_dir = librimix_root / "wav8k/min/dev"
    mid = subset_rows()[1]["mixture_ID"]
    wav, _ = sf.read(split_dir / "s1" / f"{mid}.wav", dtype="float32")
    wav[10] = np.nan
    sf.write(split_dir / "s1" / f"{mid}.wav", wav, RATE, subtype="FLOAT")
    code = prepare_libri2mix_main(["--root", str(librimix_root), "--sample_rate", "8000", "--split", "dev",
                                   "--out_dir", str(tmp_path / "o")])
    assert code == 1
    assert f"{split_dir / 's1' / mid}.wav: non-finite samples (NaN or inf)" in capsys.readouterr().out


def test_prepare_does_not_overwrite_without_asking(librimix_root, tmp_path, capsys):
    args = ["--root", str(librimix_root), "--sample_rate", "8000", "--split", "dev", "--out_dir", str(tmp_path / "o")]
    assert prepare_libri2mix_main(args + ["--seed", "1"]) == 0
    written = (tmp_path / "o" / "dev" / MAP_NAME).read_text()
    capsys.readouterr()
    assert prepare_libri2mix_main(args + ["--seed", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "exists" in err[0]
    assert (tmp_path / "o" / "dev" / MAP_NAME).read_text() == written
    assert prepare_libri2mix_main(args + ["--seed", "2", "--overwrite"]) == 0


def test_prepare_unwritable_out_is_one_line(librimix_root, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert prepare_libri2mix_main(["--root", str(librimix_root), "--sample_rate", "8000", "--split", "dev",
                                   "--out_dir", str(tmp_path / "file" / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]
