"""Export one-pass extractors (TD-SpeakerBeam / ASA / ASA-MP / IPD, DPTNet) to ONNX and TorchScript,
and run an exported ONNX file as an extractor.

The exported network is the system's ``export_module()``: ``forward(mixture (B, C, T), lengths (B,)
[, enrollment (B, Te), enrollment_lengths (B,)]) -> estimate (B, T)``, batch and lengths dynamic.
The file carries the extractor protocol as JSON (ONNX ``metadata_props["ddtse"]``; TorchScript
extra file ``ddtse.json``): format version, system and model names, ``sample_rate``,
``in_channels``, ``min_samples``, ``needs_enrollment``, the inputs, the source checkpoint.

``OnnxExtractor(path)`` runs such a file through onnxruntime behind the ``Extractor`` protocol, so
``infer.py --ckpt model.onnx`` resamples, batches and chunks it exactly like a checkpoint.
Diffusion systems (DDTSE, SGMSE+) are refused: their sampler is a Python loop.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ddtse.errors import DdtseError
from ddtse.extract import Extractor

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "ddtse"
FORMAT_VERSION = 1
ONNX_OPSET = 18


def export_metadata(system, ckpt: str | Path) -> dict:
    """The extractor protocol of ``system`` as stored in an exported file."""
    inputs = ["mixture", "lengths"] + (["enrollment", "enrollment_lengths"] if system.needs_enrollment else [])
    return {"format_version": FORMAT_VERSION, "system": type(system).registry_name,
            "model": str((system.config.get("model") or {}).get("name", "")),
            "sample_rate": int(system.sample_rate), "in_channels": int(system.in_channels),
            "min_samples": int(system.min_samples), "needs_enrollment": bool(system.needs_enrollment),
            "inputs": inputs, "outputs": ["estimate"], "checkpoint": Path(ckpt).name}


def _example_inputs(meta: dict) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with: one second of noise (two items, so no size is traced as 1)."""
    g = torch.Generator().manual_seed(0)
    n = max(int(meta["sample_rate"]), 4 * int(meta["min_samples"]))
    mixture = 0.1 * torch.randn(2, meta["in_channels"], n, generator=g)
    args = [mixture, torch.full((2,), n, dtype=torch.long)]
    if meta["needs_enrollment"]:
        args += [0.1 * torch.randn(2, n, generator=g), torch.full((2,), n, dtype=torch.long)]
    return tuple(args)


def export_extractor(ckpt: str | Path, fmt: str, output: str | Path, *, overwrite: bool = False) -> dict:
    """Export the checkpoint's network to ``output`` (written atomically); returns the metadata."""
    import warnings

    from ddtse.checkpoint import load_system

    if fmt not in FORMATS:
        raise DdtseError(f"--format is one of {', '.join(FORMATS)}, got {fmt!r}")
    output = Path(output)
    if output.is_dir():
        raise DdtseError(f"--output names a folder ({output}); give a file name, e.g. {output / ('model.' + fmt)}")
    if output.exists() and not overwrite:
        raise DdtseError(f"{output} exists; pass --overwrite to replace it")
    system = load_system(ckpt, "cpu")
    if not system.is_extractor:
        raise DdtseError(f"a '{type(system).registry_name}' checkpoint extracts no speech; nothing to export")
    module = system.export_module().eval()
    meta = export_metadata(system, ckpt)
    args = _example_inputs(meta)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about constant-folded checks of the input shape
            if fmt == "onnx":
                _export_onnx(module, args, meta, tmp)
            else:
                traced = torch.jit.trace(module, args, check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
        os.replace(tmp, output)
    except DdtseError:
        raise
    except Exception as exc:
        raise DdtseError(f"cannot export {ckpt} to {fmt}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return meta


def _export_onnx(module, args, meta: dict, path: Path) -> None:
    import onnx

    names = meta["inputs"]
    dynamic = {"mixture": {0: "batch", 2: "samples"}, "lengths": {0: "batch"},
               "enrollment": {0: "batch", 1: "enrollment_samples"}, "enrollment_lengths": {0: "batch"},
               "estimate": {0: "batch", 1: "samples"}}
    torch.onnx.export(module, args, str(path), dynamo=False, opset_version=ONNX_OPSET, input_names=names,
                      output_names=["estimate"], dynamic_axes={k: v for k, v in dynamic.items() if k in names + ["estimate"]})
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(path))


def open_onnx(path: str | Path, threads: int | None = None):
    """(onnxruntime session, ddtse metadata) of an exported ONNX file; DdtseError when it is not one."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DdtseError(f"cannot read ONNX file {path}: {str(exc).splitlines()[0]}") from exc
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if not text:
        raise DdtseError(f"{path} is an ONNX file without ddtse metadata (export it with `ddtse export`)")
    return session, json.loads(text)


def load_extractor(path: str | Path, device: str | None = None) -> Extractor:
    """An ``Extractor`` for a checkpoint, or an ``OnnxExtractor`` for an exported ``.onnx`` file."""
    if str(path).lower().endswith(".onnx"):
        return OnnxExtractor(path, device)
    return Extractor.load(path, device)


class OnnxExtractor(Extractor):
    """An exported ONNX extractor behind the ``Extractor`` protocol (onnxruntime, CPU).

    Everything above ``extract_batch`` (resampling, padding, batching, chunking) is ``Extractor``'s;
    this class only runs the network. It takes no sampler options (``seed`` is accepted and ignored)."""

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise DdtseError(f"ONNX file not found: {path}")
        if device not in (None, "auto", "cpu"):
            raise DdtseError(f"--device {device}: ONNX models run on the CPU here (use --device cpu or auto)")
        self.session, self.meta = open_onnx(path, threads or torch.get_num_threads())
        if int(self.meta.get("format_version", 0)) > FORMAT_VERSION:
            raise DdtseError(f"{path} was exported by a newer ddtse (format {self.meta['format_version']})")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.name = f"{self.meta['system']}:onnx"
        self.device = "cpu"
        self.path = path

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def needs_enrollment(self) -> bool:
        return bool(self.meta["needs_enrollment"])

    @property
    def can_refine(self) -> bool:
        return False

    @property
    def in_channels(self) -> int:
        return int(self.meta["in_channels"])

    @property
    def min_samples(self) -> int:
        return int(self.meta["min_samples"])

    def sampler_options(self) -> dict:
        return {}

    def _own(self, opts: dict) -> dict:
        return {k: v for k, v in opts.items() if k != "seed"}

    def validate_options(self, opts: dict) -> dict:
        unknown = sorted(self._own(opts))
        if unknown:
            raise DdtseError(f"an exported {self.meta['system']} model takes no sampler options, got "
                             f"{', '.join(unknown)}")
        return {}

    def extract_batch(self, batch: dict, **opts) -> tuple[torch.Tensor, dict]:
        self.check_batch(batch, opts, clues=("enrollment",))  # the exported network reads no embedding
        opts.pop("ids", None)
        opts.pop("initial_estimate", None)
        self.validate_options(opts)
        b, _, n = batch["mixture"].shape
        feeds = {"mixture": batch["mixture"], "lengths": batch.get("lengths", torch.full((b,), n)),
                 "enrollment": batch.get("enrollment"), "enrollment_lengths": batch.get("enrollment_lengths")}
        if feeds["enrollment"] is not None and feeds["enrollment_lengths"] is None:
            feeds["enrollment_lengths"] = torch.full((b,), feeds["enrollment"].shape[-1])
        dtypes = {"lengths": np.int64, "enrollment_lengths": np.int64}
        inputs = {name: np.ascontiguousarray(feeds[name].numpy(), dtype=dtypes.get(name, np.float32))
                  for name in self.input_names}
        estimate = self.session.run(["estimate"], inputs)[0]
        return torch.from_numpy(np.asarray(estimate, dtype=np.float32)), {"nfe": 1}
