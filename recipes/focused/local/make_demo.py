"""Render the focused-extractor demo corpus from espeak-ng voices (ddtse/data/demo_corpus.py).

    <out_dir>/raw/<speaker>/{train,valid}.wav        long recordings of the target voice (sentences + pauses)
    <out_dir>/dirty/{voices,noise,music}/{train,valid}/*.wav   other voices, coloured noise, "music" (tone chords)
    <out_dir>/test/{mixture,target}/<id>.wav         held-out target sentences + held-out dirty material

All at ``--sample_rate`` (44.1 kHz default); deterministic for ``--seed``. Test mixtures follow the
training recipe of clean_dirty (target + U(0.6, 1.2) * dirty, 0.9 peak guard); the last one is
long (``--long_seconds``) to exercise chunked inference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ddtse.audio.io import resample, save_audio
from ddtse.cli import ArgumentParser
from ddtse.data.demo_corpus import ESPEAK_RATE, EspeakSynth, make_noise, random_sentence, trim_silence

TARGET = ("f2", 55, 165)  # espeak variant, pitch, words per minute
OTHERS = (("m3", 40, 175), ("f4", 70, 150), ("m7", 50, 185), ("f1", 45, 170))


def speech(synth, voice, rng) -> np.ndarray:
    wav = trim_silence(synth.synth(random_sentence(rng), *voice), keep=200)
    return (wav / (np.sqrt(np.mean(wav**2)) + 1e-9) * 10 ** (-24 / 20)).astype(np.float32)


def long_recording(synth, voice, seconds, rng) -> np.ndarray:
    """Sentences with 0.35-1.2 s pauses (a 2-3 s break every few sentences) and faint room noise."""
    parts, total = [np.zeros(int(0.5 * ESPEAK_RATE), np.float32)], 0
    while total < seconds * ESPEAK_RATE:
        s = speech(synth, voice, rng)
        pause = rng.uniform(2.0, 3.0) if rng.random() < 0.25 else rng.uniform(0.35, 1.2)
        parts += [s, np.zeros(int(pause * ESPEAK_RATE), np.float32)]
        total += len(s) + int(pause * ESPEAK_RATE)
    wav = np.concatenate(parts)
    return wav + 10 ** (-70 / 20) * rng.standard_normal(len(wav)).astype(np.float32)


def music(seconds, sr, rng) -> np.ndarray:
    """Chords of decaying harmonic tones (a stand-in for game music)."""
    n = int(seconds * sr)
    out = np.zeros(n, np.float32)
    t = 0
    while t < n:
        dur = int(rng.uniform(0.3, 1.0) * sr)
        tt = np.arange(min(dur, n - t)) / sr
        env = np.exp(-3 * tt)
        for f in 110 * 2 ** (rng.integers(0, 36, size=3) / 12):
            out[t : t + len(tt)] += (env * sum(np.sin(2 * np.pi * f * h * tt) / h for h in (1, 2, 3))).astype(np.float32)
        t += dur
    return out / (np.sqrt(np.mean(out**2)) + 1e-9) * 10 ** (-24 / 20)


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0], legacy={"--out": "--out_dir"})
    p.add_argument("--out_dir", required=True, help="corpus folder to create")
    p.add_argument("--speaker", default="demo_target")
    p.add_argument("--sample_rate", type=int, default=44100)
    p.add_argument("--train_seconds", type=float, default=150)
    p.add_argument("--valid_seconds", type=float, default=30)
    p.add_argument("--test_items", type=int, default=6)
    p.add_argument("--long_seconds", type=float, default=30)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out, sr = Path(args.out_dir), args.sample_rate
    rng = np.random.default_rng(args.seed)
    synth = EspeakSynth.get()
    up = lambda w: resample(w, ESPEAK_RATE, sr)  # noqa: E731

    for part, seconds in (("train", args.train_seconds), ("valid", args.valid_seconds)):
        save_audio(out / "raw" / args.speaker / f"{part}.wav", up(long_recording(synth, TARGET, seconds, rng)), sr,
                   subtype="PCM_16")
    dirty: dict[str, list[np.ndarray]] = {}
    for part, voices in (("train", OTHERS[:3]), ("valid", OTHERS[3:]), ("test", OTHERS[3:])):
        files = []
        for v in voices:  # ~8 s of another voice, continuous chatter
            files.append(("voices", up(np.concatenate([speech(synth, v, rng) for _ in range(3)]))))
        for kind in ("white", "pink", "brown") if part == "train" else ("pink",):
            noise = make_noise(kind, int(6 * ESPEAK_RATE), rng, args.seed) * 10 ** (-26 / 20)
            files.append(("noise", up(noise.astype(np.float32))))
        files.append(("babble", up(make_noise("babble", int(6 * ESPEAK_RATE), rng, args.seed) * 10 ** (-24 / 20))))
        files.append(("music", music(8 if part == "train" else 5, sr, rng)))
        dirty[part] = [w for _, w in files]
        if part != "test":
            for k, (group, wav) in enumerate(files):
                save_audio(out / "dirty" / group / part / f"{group}_{k:02d}.wav", wav, sr, subtype="PCM_16")

    for i in range(args.test_items + 1):
        if i < args.test_items:
            target = up(np.concatenate([speech(synth, TARGET, rng), np.zeros(4000, np.float32),
                                        speech(synth, TARGET, rng)]))
        else:  # one long input
            target = up(long_recording(synth, TARGET, args.long_seconds, rng))
        noise = dirty["test"][i % len(dirty["test"])]
        noise = np.tile(noise, len(target) // len(noise) + 1)[: len(target)]
        mix = target + rng.uniform(0.6, 1.2) * noise
        g = min(1.0, 0.9 / np.abs(mix).max())
        name = f"test_{i:02d}" if i < args.test_items else "test_long"
        save_audio(out / "test" / "mixture" / f"{name}.wav", mix * g, sr)
        save_audio(out / "test" / "target" / f"{name}.wav", target * g, sr)
    print(f"demo corpus in {out}: raw/{args.speaker}/{{train,valid}}.wav, dirty/, test/")


if __name__ == "__main__":
    main()
