"""A built-in demo corpus laid out exactly like Libri2Mix, from speech synthesised with espeak-ng.

Speech comes from the pip package ``espeakng-loader`` (libespeak-ng + voice data) through ctypes:
``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)`` (22050 Hz), a synth callback,
``espeak_SetVoiceByName("en+<variant>")``, rate/pitch parameters, ``espeak_Synth`` +
``espeak_Synchronize``. A speaker is a (variant, pitch, rate) triple; train and dev/test speakers
are disjoint. Sentences are drawn from word lists with a seeded generator; utterance ids look
like LibriSpeech (``<spk>-<chapter>-<utt>``). Noise is coloured noise (white/pink/brown) or babble
of voices that are not speakers. Levels follow Libri2Mix: speech RMS U[-33, -25] dB, noise
U[-38, -30] dB, everything rescaled if a mixture peaks above 0.9.

Output (``<out>`` is the Libri2Mix root)::

    <out>/wav{16k,8k}/min/{train-100,dev,test}/{mix_clean,mix_both,s1,s2,noise}/<mixture_ID>.wav
    <out>/wav{16k,8k}/min/metadata/mixture_<split>_{mix_clean,mix_both}.csv   (absolute paths)
    <out>/wav{16k,8k}/min/metadata/libri2mix_<split>-clean_info.csv           (speaker sexes)
    <out>/wav{16k,8k}/min/{dev,test}/map_mixture2enrollment                   (SpeakerBeam format)
    <out>/speakers.csv                                                         (voice of each speaker)

Files are deterministic for a seed (same bytes for the same seed, sizes and rates).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from ddtse.data.base import PEAK_GUARD, write_csv_rows
from ddtse.data.librimix import MAP_NAME, LibriMixRecord, make_enrollment_map, rate_dir_name
from ddtse.data.mixing import colored_noise
from ddtse.errors import DdtseError

ESPEAK_RATE = 22050
SPLITS = ("train-100", "dev", "test")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Diogo", "Henrique", "Hugo",
                 "Lee", "Marco", "Storm", "antonio", "michel", "miguel", "sandro", "travis", "victor")
# More (male) variants for training only: more distinct training voices let a speaker clue generalise
# to the unseen dev/test voices, which always come from the two lists above.
EXTRA_TRAIN_VARIANTS = ("Alex", "Jacky", "Mario", "Michael", "Mike", "Nguyen", "benjamin", "boris", "caleb",
                        "david", "ed", "gustave", "iven", "marcelo", "paul", "pedro", "quincy", "rob", "zac")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda",
                   "grandma", "linda", "steph", "steph2", "steph3")
PITCHES = {"M": (35, 65), "F": (40, 75)}
MIDDLE_PITCH = {"M": 50, "F": 57}  # training voices take a third pitch once the first two are used
RATE_RANGE = (145, 190)
BABBLE_VOICES = ("klatt", "klatt2", "klatt3", "Gene", "Reed", "edward", "john", "robert", "adam", "max")
DEFAULT_MIXTURES = {"train-100": 1000, "dev": 100, "test": 100}
DEFAULT_SPEAKERS = {"train-100": 32, "dev": 8, "test": 8}

WORDS = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law car "
    "city community name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason research girl guy "
    "moment air teacher force education river garden window letter music paper table summer winter "
    "green small large bright quiet early late simple happy strong young old little great long short "
    "walks reads opens carries finds keeps brings writes takes gives shows builds moves plays holds "
    "turns starts leaves calls follows wants needs looks feels seems becomes tells asks thinks knows "
    "after before under over near across through behind beside during without within along around"
).split()


# ----------------------------------------------------------------------------- espeak via ctypes
class EspeakSynth:
    """One espeak-ng instance in this process (the library is global state)."""

    _instance: "EspeakSynth | None" = None
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as exc:
            raise DdtseError("the demo corpus needs the pip package espeakng-loader") from exc
        self.library_path = espeakng_loader.get_library_path()
        self.data_path = short_espeak_data_path(espeakng_loader.get_data_path())
        self.chunks: list[np.ndarray] = []
        self._callback = self._CALLBACK(self._collect)  # keep a reference alive
        self.lib = None
        self.reset()

    def reset(self) -> None:
        """(Re)load and initialise the library. espeak-ng keeps state across utterances (the output
        of a sentence depends on what was spoken before, even after espeak_Terminate); unloading
        and reloading the library before each utterance makes the audio a function of its inputs."""
        import _ctypes

        if self.lib is not None:
            self.lib.espeak_Terminate()
            _ctypes.dlclose(self.lib._handle)
        self.lib = ctypes.CDLL(self.library_path)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        rate = self.lib.espeak_Initialize(2, 0, self.data_path.encode(), 0)
        if rate != ESPEAK_RATE:
            raise DdtseError(f"espeak_Initialize failed (returned {rate}); data path {self.data_path}")
        self.lib.espeak_SetSynthCallback(self._callback)
        ctypes.CDLL(None).srand(0)  # espeak-ng also draws from libc's rand()
        self.lib.espeak_ng_SetRandSeed(0)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    @classmethod
    def get(cls) -> "EspeakSynth":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synth(self, text: str, variant: str, pitch: int, rate: int) -> np.ndarray:
        """Float32 speech at 22050 Hz for ``text`` in voice ``en+<variant>`` (deterministic)."""
        self.reset()
        self.chunks = []
        if self.lib.espeak_SetVoiceByName(f"en+{variant}".encode()) != 0:
            raise DdtseError(f"espeak-ng has no voice en+{variant}")
        self.lib.espeak_SetParameter(1, int(rate), 0)
        self.lib.espeak_SetParameter(3, int(pitch), 0)
        data = text.encode() + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if not self.chunks:
            raise DdtseError(f"espeak-ng produced no audio for {text!r}")
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0


def short_espeak_data_path(data_path: str) -> str:
    """A path to espeak-ng-data shorter than espeak's 160-byte buffer (a symlink in the temp dir)."""
    if len(data_path.encode()) < 120:
        return data_path
    link = os.path.join(tempfile.gettempdir(), f"ddtse-espeak-{os.getuid()}")
    if os.path.realpath(link) != os.path.realpath(data_path):
        tmp = f"{link}.{os.getpid()}"
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(data_path, tmp)
        os.replace(tmp, link)
    return link


def trim_silence(wav: np.ndarray, threshold: float = 1e-3, keep: int = 1000) -> np.ndarray:
    """Cut leading/trailing samples below ``threshold`` (keeping ``keep`` samples of margin)."""
    active = np.flatnonzero(np.abs(wav) > threshold)
    if active.size == 0:
        return wav
    return wav[max(0, active[0] - keep): active[-1] + keep]


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Voice:
    speaker_id: str
    sex: str
    variant: str
    pitch: int
    rate: int
    chapters: tuple[str, str]


def plan_voices(speakers_per_split: dict[str, int], rng: np.random.Generator) -> dict[str, list[Voice]]:
    """Voices per split, alternating sexes. Held-out splits (dev/test) take one pitch of variants
    that training never uses; training takes the other variants, at a first then a second pitch.
    Speaking rate is random per speaker. Ids are unique numbers like LibriSpeech speaker ids."""
    variants = {"M": list(MALE_VARIANTS), "F": list(FEMALE_VARIANTS)}
    for sex in variants:
        variants[sex] = [variants[sex][i] for i in rng.permutation(len(variants[sex]))]
    order = sorted(speakers_per_split, key=lambda s: s.startswith("train"))  # held-out splits first
    total = sum(speakers_per_split.values())
    ids = rng.choice(np.arange(19, 9000), size=total, replace=False)
    voices: dict[str, list[Voice]] = {}
    n = 0
    for split in order:
        count = speakers_per_split[split]
        if split.startswith("train"):  # every remaining variant at two pitches, then extra variants, then a third pitch
            first = {sex: rng.integers(2, size=len(variants[sex])) for sex in variants}
            pool = {sex: [(v, PITCHES[sex][(int(j) + second) % 2]) for second in (0, 1)
                          for v, j in zip(variants[sex], first[sex])] for sex in variants}
            extra = [EXTRA_TRAIN_VARIANTS[i] for i in rng.permutation(len(EXTRA_TRAIN_VARIANTS))]
            pool["M"] += [(v, PITCHES["M"][int(rng.integers(2))]) for v in extra]
            for sex in variants:
                pool[sex] += [(v, MIDDLE_PITCH[sex]) for v in variants[sex]]
        else:
            pool = {sex: [(v, PITCHES[sex][int(rng.integers(2))]) for v in variants[sex]] for sex in variants}
        chosen = []
        for i in range(count):
            sex = ("F", "M")[i % 2] if pool["F"] and pool["M"] else ("F" if pool["F"] else "M")
            if not pool[sex]:
                raise DdtseError(f"the demo corpus ran out of distinct voices for {split} ({count} speakers asked)")
            variant, pitch = pool[sex].pop(0)
            if not split.startswith("train"):
                variants[sex].remove(variant)
            chapters = tuple(str(c) for c in rng.integers(1000, 300000, size=2))
            rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
            chosen.append(Voice(str(ids[n]), sex, variant, int(pitch), rate, chapters))
            n += 1
        voices[split] = chosen
    return voices


def random_sentence(rng: np.random.Generator) -> str:
    """A 6-12 word sentence from the word list."""
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=int(rng.integers(6, 13))))


@dataclass(frozen=True)
class MixturePlan:
    split: str
    index: int
    mixture_id: str
    voices: tuple[Voice, Voice]
    texts: tuple[str, str]
    speech_db: tuple[float, float]
    noise_db: float
    noise_kind: str
    seed: int


def plan_mixtures(split: str, voices: list[Voice], count: int, rng: np.random.Generator,
                  seed: int) -> list[MixturePlan]:
    """``count`` two-speaker mixtures with speakers balanced (least-used first, random ties)."""
    if len(voices) < 2:
        raise DdtseError(f"split {split} needs at least 2 speakers")
    uses = np.zeros(len(voices), dtype=int)
    utt_counter = np.zeros(len(voices), dtype=int)
    plans = []
    for m in range(count):
        order = np.lexsort((rng.random(len(voices)), uses))
        pair = [int(order[0]), int(order[1])]
        if rng.random() < 0.5:
            pair.reverse()
        utts = []
        for v in pair:
            voice = voices[v]
            chapter = voice.chapters[int(utt_counter[v] % 2)]
            utts.append(f"{voice.speaker_id}-{chapter}-{int(utt_counter[v]):04d}")
            utt_counter[v] += 1
            uses[v] += 1
        plans.append(MixturePlan(
            split=split, index=m, mixture_id="_".join(utts),
            voices=(voices[pair[0]], voices[pair[1]]),
            texts=(random_sentence(rng), random_sentence(rng)),
            speech_db=tuple(float(x) for x in rng.uniform(-33, -25, size=2)),
            noise_db=float(rng.uniform(-38, -30)),
            noise_kind=str(rng.choice(["white", "pink", "brown", "babble", "babble"])),
            seed=int(rng.integers(2**31)),
        ))
    return plans


# ----------------------------------------------------------------------------- rendering
_BABBLE_BANKS: dict[int, list[np.ndarray]] = {}


def _babble_bank(seed: int) -> list[np.ndarray]:
    """16 unit-RMS sentences of non-speaker voices (built once per process and seed)."""
    if seed not in _BABBLE_BANKS:
        rng = np.random.default_rng([seed, 7])
        synth = EspeakSynth.get()
        bank = []
        for i in range(16):
            voice = BABBLE_VOICES[i % len(BABBLE_VOICES)]
            wav = trim_silence(synth.synth(random_sentence(rng), voice, int(rng.integers(30, 70)), 170))
            bank.append(wav / (np.sqrt(np.mean(wav**2)) + 1e-9))
        _BABBLE_BANKS[seed] = bank
    return _BABBLE_BANKS[seed]


def make_noise(kind: str, frames: int, rng: np.random.Generator, bank_seed: int) -> np.ndarray:
    """Unit-RMS noise at 22050 Hz: white/pink/brown, or babble of 4-6 non-speaker voices."""
    if kind != "babble":
        return colored_noise(frames, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng)
    bank = _babble_bank(bank_seed)
    out = np.zeros(frames, dtype=np.float64)
    for i in rng.choice(len(bank), size=int(rng.integers(4, 7)), replace=False):
        clip = np.tile(bank[i], int(np.ceil(frames / len(bank[i]))) + 1)
        start = int(rng.integers(len(bank[i])))
        out += clip[start:start + frames]
    out += 0.1 * colored_noise(frames, 1.0, rng)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def _set_db(wav: np.ndarray, level_db: float) -> np.ndarray:
    return wav * (10 ** (level_db / 20) / (np.sqrt(np.mean(wav.astype(np.float64) ** 2)) + 1e-12))


def render_mixture(plan: MixturePlan, out: str, rates: tuple[int, ...], modes: tuple[str, ...],
                   bank_seed: int) -> dict:
    """Synthesise and write one mixture at every rate/mode; returns lengths per (rate, mode)."""
    synth = EspeakSynth.get()
    rng = np.random.default_rng(plan.seed)
    sources = []
    for voice, text, level in zip(plan.voices, plan.texts, plan.speech_db):
        wav = trim_silence(synth.synth(text, voice.variant, voice.pitch, voice.rate))[: int(5.0 * ESPEAK_RATE)]
        wav = wav + 1e-5 * rng.standard_normal(len(wav)).astype(np.float32)  # no exact digital zeros
        sources.append(wav)
    longest = max(len(s) for s in sources)
    noise = make_noise(plan.noise_kind, longest, rng, bank_seed)
    lengths = {}
    for sr in rates:
        res = [soxr.resample(s, ESPEAK_RATE, sr, quality="HQ") for s in (*sources, noise)]
        for mode in modes:
            n = min(len(res[0]), len(res[1])) if mode == "min" else max(len(res[0]), len(res[1]))
            # levels are set on the samples that are kept, at this rate
            s1, s2, nz = (_set_db(x[:n], db) for x, db in zip(res, (*plan.speech_db, plan.noise_db)))
            s1, s2, nz = (np.pad(x, (0, n - len(x))).astype(np.float32) for x in (s1, s2, nz))
            clean, both = s1 + s2, s1 + s2 + nz
            peak = max(np.max(np.abs(clean)), np.max(np.abs(both)))
            gain = PEAK_GUARD / peak if peak > PEAK_GUARD else 1.0
            split_dir = Path(out) / rate_dir_name(sr) / mode / plan.split
            for sub, wav in (("s1", s1), ("s2", s2), ("noise", nz), ("mix_clean", clean), ("mix_both", both)):
                write_wav_pcm16(split_dir / sub / f"{plan.mixture_id}.wav", wav * gain, sr)
            lengths[(sr, mode)] = n
    return {"split": plan.split, "index": plan.index, "lengths": lengths}


def write_wav_pcm16(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM WAV directly (header + samples; several times faster than sf.write)."""
    data = np.clip(np.round(wav * 32768.0), -32768, 32767).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1,
                         int(sample_rate), int(sample_rate) * 2, 2, 16, b"data", len(data))
    with open(path, "wb") as handle:
        handle.write(header + data)


def _render_job(args):
    return render_mixture(*args)


# ----------------------------------------------------------------------------- driver
def build_demo_corpus(out: str | Path, mixtures: dict[str, int] | None = None,
                      speakers: dict[str, int] | None = None, rates=(16000, 8000), modes=("min",),
                      seed: int = 0, processes: int = 2, progress: bool = False) -> dict:
    """Render the demo corpus into ``out`` (the Libri2Mix root); returns a summary dict
    (counts, seconds). ``mixtures``/``speakers``: per split (train-100, dev, test)."""
    t0 = time.perf_counter()
    mixtures = dict(DEFAULT_MIXTURES if mixtures is None else mixtures)
    speakers = dict(DEFAULT_SPEAKERS if speakers is None else speakers)
    unknown = (set(mixtures) | set(speakers)) - set(SPLITS)
    if unknown:
        raise DdtseError(f"unknown demo corpus split(s) {', '.join(sorted(unknown))}; use {', '.join(SPLITS)}")
    splits = [s for s in SPLITS if mixtures.get(s, 0) > 0]
    rates = tuple(int(r) for r in rates)
    for mode in modes:
        if mode not in ("min", "max"):
            raise DdtseError(f"mode must be min or max, got '{mode}'")
    out = Path(out).resolve()
    rng = np.random.default_rng(seed)
    voices = plan_voices({s: int(speakers.get(s, DEFAULT_SPEAKERS[s])) for s in splits}, rng)
    plans = {s: plan_mixtures(s, voices[s], int(mixtures[s]), rng, seed) for s in splits}
    for sr in rates:
        for mode in modes:
            for split in splits:
                for sub in ("mix_clean", "mix_both", "s1", "s2", "noise"):
                    (out / rate_dir_name(sr) / mode / split / sub).mkdir(parents=True, exist_ok=True)
            (out / rate_dir_name(sr) / mode / "metadata").mkdir(parents=True, exist_ok=True)

    jobs = [(p, str(out), rates, tuple(modes), seed) for s in splits for p in plans[s]]
    if processes > 1 and len(jobs) > 1:
        short_espeak_data_path(__import__("espeakng_loader").get_data_path())
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = list(pool.imap(_render_job, jobs, chunksize=8))
    else:
        results = [_render_job(job) for job in jobs]
    lengths = {(r["split"], r["index"]): r["lengths"] for r in results}

    _write_metadata(out, plans, voices, lengths, rates, modes, seed)
    seconds = time.perf_counter() - t0
    return {"out": str(out), "mixtures": {s: len(plans[s]) for s in splits},
            "speakers": {s: len(voices[s]) for s in splits}, "rates": list(rates), "modes": list(modes),
            "seconds": round(seconds, 2)}


def _write_metadata(out: Path, plans, voices, lengths, rates, modes, seed) -> None:
    voice_rows = [{"speaker_ID": v.speaker_id, "sex": v.sex, "split": s, "variant": v.variant,
                   "pitch": v.pitch, "rate": v.rate} for s, vs in voices.items() for v in vs]
    write_csv_rows(out / "speakers.csv", voice_rows, ["speaker_ID", "sex", "split", "variant", "pitch", "rate"])
    for sr in rates:
        for mode in modes:
            meta = out / rate_dir_name(sr) / mode / "metadata"
            for split, split_plans in plans.items():
                split_dir = out / rate_dir_name(sr) / mode / split
                records, rows = [], []
                for p in split_plans:
                    n = lengths[(split, p.index)][(sr, mode)]
                    paths = {sub: str(split_dir / sub / f"{p.mixture_id}.wav")
                             for sub in ("mix_clean", "mix_both", "s1", "s2", "noise")}
                    rows.append({"mixture_ID": p.mixture_id, "source_1_path": paths["s1"],
                                 "source_2_path": paths["s2"], "noise_path": paths["noise"], "length": n,
                                 "mix_clean": paths["mix_clean"], "mix_both": paths["mix_both"]})
                    records.append(LibriMixRecord(p.mixture_id, paths["mix_both"], [paths["s1"], paths["s2"]],
                                                  paths["noise"], n))
                for mtype in ("mix_clean", "mix_both"):
                    columns = ["mixture_ID", "mixture_path", "source_1_path", "source_2_path"]
                    columns += ["noise_path", "length"] if mtype == "mix_both" else ["length"]
                    write_csv_rows(meta / f"mixture_{split}_{mtype}.csv",
                                   [dict(r, mixture_path=r[mtype]) for r in rows], columns)
                info_name = ("libri2mix_train-clean-100_info.csv" if split == "train-100"
                             else f"libri2mix_{split}-clean_info.csv")
                write_csv_rows(meta / info_name, [
                    {"mixture_ID": p.mixture_id, "speaker_1_ID": p.voices[0].speaker_id,
                     "speaker_1_sex": p.voices[0].sex, "speaker_2_ID": p.voices[1].speaker_id,
                     "speaker_2_sex": p.voices[1].sex} for p in split_plans],
                    ["mixture_ID", "speaker_1_ID", "speaker_1_sex", "speaker_2_ID", "speaker_2_sex"])
                if split != "train-100":
                    lines, problems = make_enrollment_map(records, seed)
                    if problems:
                        raise DdtseError(f"demo corpus {split}: {problems[0]} (use more mixtures per speaker)")
                    (split_dir / MAP_NAME).write_text("\n".join(lines) + "\n")
