"""Speaker verification scoring: equal error rate, seeded trial lists (``label utt1 utt2``), and the
evaluation of a speaker encoder on the utterances of held-out speakers."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch

from ddtse.errors import DdtseError


def equal_error_rate(scores, labels) -> tuple[float, float]:
    """(EER in [0, 1], threshold) of trial scores (higher = same speaker) and labels (1 target, 0 not).

    A trial is accepted when its score >= the threshold; the EER is where the false-acceptance and
    false-rejection rates cross, linearly interpolated between adjacent thresholds."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(int)
    if scores.shape != labels.shape:
        raise DdtseError(f"{scores.size} scores but {labels.size} labels")
    if not np.isin(labels, (0, 1)).all():
        raise DdtseError("trial labels must be 0 (different speakers) or 1 (same speaker)")
    n_target, n_nontarget = int(labels.sum()), int((1 - labels).sum())
    if n_target == 0 or n_nontarget == 0:
        raise DdtseError(f"the EER needs target and non-target trials (got {n_target} and {n_nontarget})")
    if not np.isfinite(scores).all():
        raise DdtseError("trial scores must be finite")
    thresholds = np.append(np.unique(scores), np.inf)
    target, nontarget = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    frr = np.searchsorted(target, thresholds, side="left") / n_target  # targets below t
    far = 1.0 - np.searchsorted(nontarget, thresholds, side="left") / n_nontarget  # non-targets >= t
    i = int(np.argmax(frr >= far))  # frr rises to 1 and far falls to 0 at +inf: always found
    if i == 0:
        return float(far[0]), float(thresholds[0])
    d0, d1 = frr[i - 1] - far[i - 1], frr[i] - far[i]
    alpha = -d0 / (d1 - d0)
    eer = far[i - 1] + alpha * (far[i] - far[i - 1])
    hi = thresholds[i] if np.isfinite(thresholds[i]) else thresholds[i - 1]
    return float(eer), float(thresholds[i - 1] + alpha * (hi - thresholds[i - 1]))


def make_trials(speakers: dict[str, str], num_trials: int = 2000, seed: int = 0) -> list[tuple[int, str, str]]:
    """Seeded trials ``(label, utt1, utt2)`` from ``{utterance id: speaker}``: up to half same-speaker
    pairs, the rest different-speaker pairs, each pair at most once."""
    utts = sorted(speakers)
    if len({speakers[u] for u in utts}) < 2:
        raise DdtseError("verification trials need at least 2 speakers")
    pairs = list(itertools.combinations(range(len(utts)), 2))
    same = [p for p in pairs if speakers[utts[p[0]]] == speakers[utts[p[1]]]]
    diff = [p for p in pairs if speakers[utts[p[0]]] != speakers[utts[p[1]]]]
    if not same:
        raise DdtseError("verification trials need a speaker with at least 2 utterances")
    rng = np.random.default_rng(seed)
    n_same = min(len(same), max(1, num_trials // 2))
    n_diff = min(len(diff), max(1, num_trials - n_same))
    chosen = [(1, same[i]) for i in rng.choice(len(same), n_same, replace=False)]
    chosen += [(0, diff[i]) for i in rng.choice(len(diff), n_diff, replace=False)]
    order = rng.permutation(len(chosen))
    return [(chosen[k][0], utts[chosen[k][1][0]], utts[chosen[k][1][1]]) for k in order]


def write_trials(path: str | Path, trials) -> Path:
    """Write ``label utt1 utt2`` lines (label 1 = same speaker)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{label} {a} {b}\n" for label, a, b in trials))
    return path


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    """Read a ``label utt1 utt2`` trial list (label 1/0, or target/nontarget)."""
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"trial list not found: {path}")
    trials = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        label = {"1": 1, "0": 0, "target": 1, "nontarget": 0}.get(parts[0].lower()) if len(parts) == 3 else None
        if label is None:
            raise DdtseError(f"{path}:{lineno}: expected 'label utt1 utt2' with label 1 or 0, got {line!r}")
        trials.append((label, parts[1], parts[2]))
    if not trials:
        raise DdtseError(f"trial list is empty: {path}")
    return trials


def cosine_scores(embeddings: dict[str, torch.Tensor | np.ndarray], trials) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings."""
    missing = [u for _, a, b in trials for u in (a, b) if u not in embeddings]
    if missing:
        raise DdtseError(f"no embedding for utterance {missing[0]} of the trial list")
    keys = sorted(embeddings)
    index = {k: i for i, k in enumerate(keys)}
    mat = torch.stack([torch.as_tensor(np.asarray(embeddings[k]), dtype=torch.float32).reshape(-1) for k in keys])
    mat = torch.nn.functional.normalize(mat, dim=-1)
    a = torch.tensor([index[t[1]] for t in trials])
    b = torch.tensor([index[t[2]] for t in trials])
    return (mat[a] * mat[b]).sum(-1).numpy()


def score_trials(embeddings: dict, trials) -> dict:
    """EER (in %) and counts of a trial list scored by cosine similarity."""
    scores = cosine_scores(embeddings, trials)
    labels = np.array([t[0] for t in trials])
    eer, threshold = equal_error_rate(scores, labels)
    return {"eer": 100.0 * eer, "threshold": threshold, "trials": len(trials),
            "target_trials": int(labels.sum()), "nontarget_trials": int((1 - labels).sum())}


@torch.no_grad()
def embed_utterances(encoder: torch.nn.Module, dataset, batch_size: int = 8, device: str = "cpu") -> dict:
    """``{utterance id: (D,) embedding}`` of every item of a speaker-utterance dataset."""
    from ddtse.data.datamodule import make_loader

    encoder = encoder.to(device).eval()
    out = {}
    for batch in make_loader(dataset, batch_size, train=False):
        wav = batch["mixture"][:, 0].to(device)
        emb = encoder(wav, batch["lengths"].to(device)).float().cpu()
        out.update(zip(batch["ids"], emb))
    return out


def evaluate_speaker_encoder(encoder: torch.nn.Module, dataset, trials=None, num_trials: int = 2000,
                             seed: int = 0, trials_path: str | Path | None = None, batch_size: int = 8,
                             device: str = "cpu") -> dict:
    """EER of ``encoder`` on a speaker-utterance dataset (ddtse/data/speakers.py): ``trials`` (a
    list), else the file ``trials_path`` if it exists, else trials drawn with ``seed`` (and written
    to ``trials_path`` when given)."""
    if trials is None and trials_path is not None and Path(trials_path).is_file():
        trials = read_trials(trials_path)
    if trials is None:
        trials = make_trials(dataset.utterance_speakers(), num_trials, seed)
        if trials_path is not None:
            write_trials(trials_path, trials)
    result = score_trials(embed_utterances(encoder, dataset, batch_size, device), trials)
    result.update(speakers=len(dataset.speakers), utterances=len(dataset))
    return result


def write_json(path: str | Path, result: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
