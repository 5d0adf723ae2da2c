"""The ``ddtse`` command (``[project.scripts]`` in pyproject.toml; also ``python -m ddtse``).

``ddtse VERB ARGS...`` runs the same entry point as the top-level script or module, with the same
arguments, output and exit codes: ``ddtse train ...`` == ``python train.py ...``.
"""
from __future__ import annotations

import importlib
import sys

#: verb -> (module, function, one-line description, the script it equals)
VERBS = {
    "train": ("ddtse.cli.train", "main", "train an extractor or a speaker encoder from a YAML config", "train.py"),
    "infer": ("ddtse.cli.infer", "main", "extract the target speaker with any trained checkpoint", "infer.py"),
    "score": ("ddtse.cli.score", "main", "score extracted speech (SI-SDR(i), PESQ, ESTOI, DNSMOS, ...)",
              "calc_metrics.py"),
    "prepare": ("ddtse.cli.prepare", "prepare_libri2mix_main",
                "check a Libri2Mix tree and write its lists and enrollment maps", "data/prepare_libri2mix.py"),
    "make_extr_lists": ("ddtse.cli.prepare", "make_extr_lists_main", "write a WSJ0-2mix-extr style list from a speaker-labelled corpus",
                        "data/make_extr_lists.py"),
    "make_demo_corpus": ("ddtse.cli.prepare", "make_demo_corpus_main",
                         "render the small Libri2Mix-shaped demo corpus (espeak-ng voices)", "data/make_demo_corpus.py"),
    "export": ("ddtse.cli.export", "main", "export a discriminative extractor to ONNX or TorchScript",
               "python -m ddtse.cli.export"),
    "import": ("ddtse.cli.import_ckpt", "main",
               "import a DDTSE authors' (slt2024_ddtse) or sgmse checkpoint as a ddtse checkpoint",
               "python -m ddtse.cli.import_ckpt"),
    "slice": ("ddtse.cli.slicer", "main", "cut long recordings into training clips at silences", "slicer.py"),
    "report": ("ddtse.cli.report", "main", "collect scores into a results table and plot spectrograms",
               "python -m ddtse.cli.report"),
    "evaluate": ("ddtse.cli.evaluate", "main", "extract and score the items of a dataset defined in a config",
                 "python -m ddtse.cli.evaluate"),
    "evaluate_speaker": ("ddtse.cli.evaluate_speaker", "main", "equal error rate of a speaker encoder on trials",
                         "python -m ddtse.cli.evaluate_speaker"),
}
# the wrappers of these handle DdtseError themselves (exit 2 with one line)
_SELF_WRAPPED = {"prepare", "make_extr_lists", "make_demo_corpus"}


def _available() -> dict:
    """The verbs whose module exists in this checkout (evaluate_speaker is optional)."""
    from importlib.util import find_spec

    return {verb: spec for verb, spec in VERBS.items() if find_spec(spec[0]) is not None}


def usage() -> str:
    verbs = _available()
    width = max(map(len, verbs))
    lines = ["usage: ddtse VERB [ARGS...]   (ddtse VERB --help for a verb's options)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {spec[2]}  (= {spec[3]})" for verb, spec in verbs.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    verbs = _available()
    if verb not in verbs:
        print(f"error: unknown verb {verb!r} (verbs: {', '.join(verbs)})", file=sys.stderr)
        return 2
    module, function = verbs[verb][:2]
    entry = getattr(importlib.import_module(module), function)
    saved = sys.argv
    sys.argv = [f"ddtse {verb}", *rest]  # argparse's prog: "usage: ddtse train ..."
    try:
        if verb in _SELF_WRAPPED:
            return int(entry(rest) or 0)
        from ddtse.cli import run_cli

        return run_cli(entry, rest)
    finally:
        sys.argv = saved


if __name__ == "__main__":
    sys.exit(main())
