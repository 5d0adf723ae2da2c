"""Write exp/<tag>/RESULTS.md from score folders, and spectrogram PNGs of a few utterances."""
from __future__ import annotations

import sys
from pathlib import Path

from ddtse.cli import ArgumentParser, run_cli


def parse_args(argv=None):
    from ddtse.data.sources import add_source_args

    p = ArgumentParser(description="Collect scores into a results table and plot spectrograms.",
                       legacy={"--out": "--output"})
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--row", action="append", default=[],
                   help="LABEL|SCORES_DIR[|EXTRACTED_DIR[|NOTE]] (paths relative to --exp_dir); repeatable")
    p.add_argument("--title", default="Results")
    p.add_argument("--header", default="", help="text (Markdown) put above the table, e.g. the data set")
    p.add_argument("--commands", default=None, help="file whose text is appended as the commands that produced it")
    p.add_argument("--plots", type=int, default=0, help="spectrogram PNGs for this many utterances")
    add_source_args(p, shorthands=("--split", "--list"), flags=("--mixture_type", "--enrollment_map"),
                    title="items the extracted ids refer to (for the plots)")
    p.add_argument("--curve", action="append", default=[],
                   help="LABEL|RUN_DIR (relative to --exp_dir): add this training run to learning_curves.png; repeatable")
    p.add_argument("--output", default="RESULTS.md", help="results file, relative to --exp_dir (default: RESULTS.md)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ddtse.audio.io import audio_info, load_audio
    from ddtse.errors import DdtseError
    from ddtse.data.sources import items_from_args
    from ddtse.report import load_row, plot_learning_curves, plot_spectrograms, results_table

    exp = Path(args.exp_dir)
    rows, extracted = [], {}
    for spec in args.row:
        parts = spec.split("|")
        if len(parts) < 2 or len(parts) > 4:
            raise DdtseError(f"--row '{spec}' is not LABEL|SCORES_DIR[|EXTRACTED_DIR[|NOTE]]")
        label, scores = parts[0], exp / parts[1]
        ext = exp / parts[2] if len(parts) > 2 and parts[2] else None
        rows.append(load_row(label, scores, ext, parts[3] if len(parts) > 3 else ""))
        if ext is not None:
            extracted[label] = ext
    text = [f"# {args.title}", ""]
    if args.header:
        text += [args.header, ""]
    text.append(results_table(rows))
    pngs = []
    items = items_from_args(args, required=False) if args.plots else None
    if items:
        shown = 0
        for item in items:
            ests = {label: d / f"{item.id}.wav" for label, d in extracted.items() if (d / f"{item.id}.wav").exists()}
            if len(ests) < len(extracted) or not ests:
                continue
            info_sr = audio_info(item.mixture or next(iter(ests.values()))).sample_rate
            signals = {}
            if item.mixture is not None:
                signals["mixture"] = load_audio(item.mixture, info_sr, channel=0)
            if item.enrollment is not None:
                signals["enrollment"] = load_audio(item.enrollment, info_sr)
            signals.update({label: load_audio(p, info_sr) for label, p in ests.items()})
            if item.reference is not None:
                signals["reference"] = load_audio(item.reference, info_sr)
            png = plot_spectrograms(exp / "plots" / f"{item.id.replace('/', '_')}.png", signals, info_sr, item.id)
            pngs.append(png)
            shown += 1
            if shown >= args.plots:
                break
    if pngs:
        text += ["", "Spectrograms (mixture / enrollment / estimates / reference):", ""]
        text += [f"- [{p.name}](plots/{p.name})" for p in pngs]
    runs = {}
    for spec in args.curve:
        label, sep, run_dir = spec.partition("|")
        if not sep or not label or not run_dir:
            raise DdtseError(f"--curve '{spec}' is not LABEL|RUN_DIR")
        runs[label] = exp / run_dir
    if runs and plot_learning_curves(exp / "learning_curves.png", runs):
        text += ["", "Learning curves (validation SI-SDRi and selection rate against training step): "
                 "[learning_curves.png](learning_curves.png)"]
    if args.commands and Path(args.commands).exists():
        text += ["", "## Commands", "", "```", Path(args.commands).read_text().strip(), "```"]
    out = exp / args.output
    out.write_text("\n".join(text) + "\n")
    print("\n".join(text[: 4 + len(rows) + 2]))
    print(f"wrote {out}" + (f" and {len(pngs)} spectrogram PNG(s) in {exp / 'plots'}" if pngs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
