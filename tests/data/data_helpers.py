"""Helpers of the data tests: a Libri2Mix tree with REAL dev IDs (tests/assets) and synthetic audio."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GENERATOR_ROOT = "/home/generator/LibriMix/Libri2Mix"  # absolute paths "of the generating machine"
RATE = 8000
SPEAKER_FREQ = {"1272": 220.0, "2035": 440.0, "6313": 880.0}


def utterance_signal(utt: str, rate: int = RATE) -> np.ndarray:
    """A tone at the speaker's frequency; length 0.4-0.7 s from the utterance number (deterministic)."""
    spk, chapter, number = utt.split("-")
    seconds = 0.4 + (int(number) % 4) * 0.1
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(int(chapter) + int(number))
    return (0.1 * np.sin(2 * np.pi * SPEAKER_FREQ[spk] * t) + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def dominant_frequency(wav: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wav))
    return float(np.argmax(spectrum) * rate / len(wav))


def subset_rows() -> list[dict]:
    with open(ASSETS / "libri2mix_dev-clean_subset.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def write_tree(root: Path, rate: int = RATE, split: str = "dev") -> Path:
    """Write ``<root>/wav8k/min/<split>/...`` + metadata (paths of GENERATOR_ROOT); returns the split dir."""
    rate_dir = f"wav{rate // 1000}k"
    split_dir = root / rate_dir / "min" / split
    meta = root / rate_dir / "min" / "metadata"
    meta.mkdir(parents=True)
    rows = {"mix_both": [], "mix_clean": []}
    for row in subset_rows():
        mid = row["mixture_ID"]
        s1, s2 = (utterance_signal(u, rate) for u in mid.split("_"))
        n = min(len(s1), len(s2))
        s1, s2 = s1[:n], s2[:n]
        noise = (0.01 * np.random.default_rng(len(mid)).standard_normal(n)).astype(np.float32)
        signals = {"s1": s1, "s2": s2, "noise": noise, "mix_clean": s1 + s2, "mix_both": s1 + s2 + noise}
        for sub, wav in signals.items():
            (split_dir / sub).mkdir(parents=True, exist_ok=True)
            sf.write(split_dir / sub / f"{mid}.wav", wav, rate, subtype="FLOAT")
        gen = f"{GENERATOR_ROOT}/{rate_dir}/min/{split}"
        for mtype in rows:
            rows[mtype].append({"mixture_ID": mid, "mixture_path": f"{gen}/{mtype}/{mid}.wav",
                                "source_1_path": f"{gen}/s1/{mid}.wav", "source_2_path": f"{gen}/s2/{mid}.wav",
                                "noise_path": f"{gen}/noise/{mid}.wav", "length": f"{float(n)}"})
    for mtype, mrows in rows.items():
        cols = ["mixture_ID", "mixture_path", "source_1_path", "source_2_path"]
        cols += ["noise_path", "length"] if mtype == "mix_both" else ["length"]
        with open(meta / f"mixture_{split}_{mtype}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(mrows)
    shutil.copy(ASSETS / "libri2mix_dev-clean_subset_info.csv", meta / f"libri2mix_{split}-clean_info.csv")
    return split_dir


