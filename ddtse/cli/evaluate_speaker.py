"""Speaker-verification EER of a speaker encoder on held-out speakers.

    python -m ddtse.cli.evaluate_speaker --ckpt ENC.ckpt --data data/Libri2Mix --split test \
        [--trials trials.txt] [--num_trials 2000] [--seed 0] [--max_seconds 10] [--output eer.json]

``--data``: a Libri2Mix root (with ``--split``), a Libri2Mix split folder, a ``<speaker>/<utt>.wav``
folder or a ``speaker,path`` CSV. ``--trials``: read this ``label utt1 utt2`` list if it exists,
else draw one with ``--seed`` and write it there. ``--ckpt`` may also be an extractor with a
speaker module (``load_speaker_encoder``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    p = ArgumentParser(description="Equal error rate of a speaker encoder on verification trials.",
                       legacy={"--out": "--output"})
    p.add_argument("--ckpt", required=True, help="speaker_encoder checkpoint (or an extractor with a speaker module)")
    p.add_argument("--data", required=True, help="Libri2Mix root (+ --split), split folder, speaker folder or CSV")
    p.add_argument("--split", default=None, help="Libri2Mix split under --data (e.g. test)")
    p.add_argument("--mode", default="min")
    p.add_argument("--trials", default=None, help="trial list: read if it exists, else written there")
    p.add_argument("--num_trials", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_seconds", type=float, default=None, help="score the first N seconds of each utterance")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None, help="JSON file for the result")
    return p.parse_args(argv)


def data_source(data: str, split: str | None, mode: str) -> dict | str:
    """The speaker_utterances source of ``--data``/``--split``."""
    path = Path(data)
    if split:
        return {"type": "librimix", "root": str(path), "split": split, "mode": mode}
    if path.is_dir() and ((path / "s1").is_dir() or (path.parent / "metadata").is_dir()):
        return {"type": "librimix", "path": str(path)}
    return str(path)


def main(argv=None):
    args = parse_args(argv)
    import json

    import torch

    from ddtse.data.speakers import SpeakerUtteranceDataset
    from ddtse.checkpoint import load_speaker_encoder
    from ddtse.speaker_verification import evaluate_speaker_encoder, write_json

    encoder = load_speaker_encoder(args.ckpt)
    rate = int(getattr(encoder, "sample_rate", 16000) or 16000)
    dataset = SpeakerUtteranceDataset(sample_rate=rate, train=False, sources=[data_source(args.data, args.split, args.mode)],
                                      max_seconds=args.max_seconds)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    result = evaluate_speaker_encoder(encoder, dataset, num_trials=args.num_trials, seed=args.seed,
                                      trials_path=args.trials, batch_size=args.batch_size, device=device)
    result.update(ckpt=str(args.ckpt), data=str(args.data), split=args.split, trials_file=args.trials)
    print(f"EER {result['eer']:.2f} % on {result['trials']} trials ({result['target_trials']} same-speaker, "
          f"{result['nontarget_trials']} different-speaker; {result['speakers']} speakers, "
          f"{result['utterances']} utterances)")
    if args.output:
        write_json(args.output, result)
        print(f"wrote {args.output}")
    else:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
