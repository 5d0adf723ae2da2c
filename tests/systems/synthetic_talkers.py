"""A tiny synthetic "talker" corpus for tests that must tell speakers apart (tests/systems/test_speaker_clue_used.py).

A talker is a harmonic complex (harmonics 1..``harmonics`` of its own F0, amplitudes 1/n, random
phases, a slight vibrato and a small per-signal F0 jitter) under a random syllable-like on/off
amplitude envelope (raised-cosine ramps). Talkers differ only in pitch (and so in where their
harmonics lie); every signal of a talker has a fresh envelope, vibrato phase and harmonic phases.

``make_batch`` builds a batch in the ddtse contract (``collate_batch``): a mixture of the target
talker and a different interferer talker at ``sir_db`` +- ``sir_jitter_db``, the enrollment (another
signal of the target talker), the clean target, and also the interferer's clean signal and an
enrollment of the interferer (keys ``interferer`` and ``interferer_enrollment``), so that a test can
swap the roles (``swap_roles``). Everything is drawn from one ``torch.Generator``: fixed seed, fixed batch.
"""
from __future__ import annotations

import math

import torch

F0S = (110.0, 160.0, 230.0, 330.0)  # Hz, one per talker


def talker_signals(f0: torch.Tensor, n_samples: int, sample_rate: int, g: torch.Generator, *,
                   harmonics: int = 4, vibrato: float = 0.015, jitter: float = 0.02,
                   on_s=(0.08, 0.22), off_s=(0.04, 0.16), ramp_s: float = 0.01) -> torch.Tensor:
    """(B,) F0s in Hz -> (B, T) unit-RMS harmonic complexes under random syllable envelopes."""
    b = f0.shape[0]
    t = torch.arange(n_samples, dtype=torch.float64) / sample_rate
    base = f0.double() * (1 + jitter * (2 * torch.rand(b, generator=g, dtype=torch.float64) - 1))
    rate = 4.0 + 2.0 * torch.rand(b, 1, generator=g, dtype=torch.float64)  # vibrato 4-6 Hz
    vphase = 2 * math.pi * torch.rand(b, 1, generator=g, dtype=torch.float64)
    inst = base[:, None] * (1 + vibrato * torch.sin(2 * math.pi * rate * t[None] + vphase))  # (B, T) Hz
    phase = 2 * math.pi * torch.cumsum(inst, dim=-1) / sample_rate
    wav = torch.zeros(b, n_samples, dtype=torch.float64)
    nyquist = sample_rate / 2
    for n in range(1, harmonics + 1):
        phi = 2 * math.pi * torch.rand(b, 1, generator=g, dtype=torch.float64)
        audible = (n * inst < 0.95 * nyquist).double()
        wav += audible * torch.sin(n * phase + phi) / n
    env = torch.stack([_envelope(n_samples, sample_rate, g, on_s, off_s, ramp_s) for _ in range(b)])
    wav = wav * env
    wav = wav / wav.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
    return wav.float()


def _envelope(n_samples: int, sample_rate: int, g: torch.Generator, on_s, off_s, ramp_s) -> torch.Tensor:
    """(T,) float64 on/off envelope: syllables of U(on_s) seconds separated by pauses of U(off_s)."""
    def uniform(lo_hi):
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64).item()

    env = torch.zeros(n_samples, dtype=torch.float64)
    ramp = max(1, int(ramp_s * sample_rate))
    fade = 0.5 - 0.5 * torch.cos(math.pi * torch.arange(ramp, dtype=torch.float64) / ramp)
    pos = -int(uniform((0.0, on_s[1])) * sample_rate)  # start anywhere inside the first syllable
    while pos < n_samples:
        length = max(2 * ramp + 1, int(uniform(on_s) * sample_rate))
        seg = torch.ones(length, dtype=torch.float64)
        seg[:ramp] = fade
        seg[-ramp:] = fade.flip(0)
        lo, hi = max(pos, 0), min(pos + length, n_samples)
        if hi > lo:
            env[lo:hi] = seg[lo - pos:hi - pos]
        pos += length + int(uniform(off_s) * sample_rate)
    if env.max() == 0:  # never silent
        env[:] = 1.0
    return env


def make_batch(batch_size: int, sample_rate: int, seconds: float, seed: int, *,
               enrollment_seconds: float | None = None, sir_db: float = 0.0, sir_jitter_db: float = 3.0,
               snr_db: float = 30.0, f0s=F0S, **talker) -> dict:
    """A batch (ddtse contract) of target + interferer mixtures, with the interferer's signals too."""
    g = torch.Generator().manual_seed(int(seed))
    n = int(round(seconds * sample_rate))
    ne = int(round((enrollment_seconds or seconds) * sample_rate))
    k = len(f0s)
    tgt = torch.randint(0, k, (batch_size,), generator=g)
    itf = (tgt + torch.randint(1, k, (batch_size,), generator=g)) % k  # always another talker
    f0 = torch.tensor(f0s)
    target = talker_signals(f0[tgt], n, sample_rate, g, **talker)
    interferer = talker_signals(f0[itf], n, sample_rate, g, **talker)
    enrollment = talker_signals(f0[tgt], ne, sample_rate, g, **talker)
    interferer_enrollment = talker_signals(f0[itf], ne, sample_rate, g, **talker)
    sir = sir_db + sir_jitter_db * (2 * torch.rand(batch_size, 1, generator=g) - 1)
    interferer = interferer * 10 ** (-sir / 20)
    noise = torch.randn(batch_size, n, generator=g) * 10 ** (-snr_db / 20)
    gain = 0.25
    mixture = gain * (target + interferer + noise)
    return {
        "mixture": mixture[:, None], "target": gain * target, "interferer": gain * interferer,
        "enrollment": gain * enrollment, "interferer_enrollment": gain * interferer_enrollment,
        "lengths": torch.full((batch_size,), n, dtype=torch.long),
        "enrollment_lengths": torch.full((batch_size,), ne, dtype=torch.long),
        "ids": [f"syn{seed}_{i}" for i in range(batch_size)],
        "speaker_index": tgt, "interferer_index": itf,
    }


def swap_roles(batch: dict) -> dict:
    """The same mixtures with the interferer as the target (its enrollment and reference)."""
    return {**batch, "target": batch["interferer"], "interferer": batch["target"],
            "enrollment": batch["interferer_enrollment"], "interferer_enrollment": batch["enrollment"],
            "speaker_index": batch["interferer_index"], "interferer_index": batch["speaker_index"]}
