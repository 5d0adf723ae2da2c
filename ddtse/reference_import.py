"""Import the reference implementations' Lightning checkpoints as ddtse checkpoints.

Formats (``IMPORT_FORMATS``):

- ``slt2024_ddtse``: the DDTSE authors' code (vivian556123/slt2024-ddtse, branch ``code``,
  ``ConditionalDDTSEModel`` with backbone ``conditionalncsnpp``). It becomes our ``ddtse`` system
  with ``model.speaker: {name: precomputed, dim: 256}`` (their clue: an external 256-d WeSpeaker
  embedding, passed unchanged to FiLM) and their network's quirks kept exactly: x_t only (2
  channels), no time embedding, FiLM in every residual block and the bottleneck concat, both in
  their scrambled layout (``film_layout: slt2024``).
- ``sgmse``: sp-uhh/sgmse's ``ScoreModel`` with backbone ``ncsnpp``. It becomes our ``sgmse``
  system without a speaker clue (speech enhancement); score = -NN([x_t, y], t) with sgmse's
  ``scale_by_sigma`` (÷ t before the output 1x1 conv: ``scale_by_t``).

The file is read with ``torch.load(weights_only=True)`` and an explicit allowlist
(``REFERENCE_CLASSES``): the class reference these checkpoints pickle (``data_module_cls`` =
``sgmse.data_module.SpecsDataModule``) loads as an inert placeholder and Lightning's
``AttributeDict`` as a plain dict; any other Python object is refused in one line naming it. The
reference packages are never imported. Backbone and SDE options found in ``hyper_parameters``
override the reference defaults.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ddtse.checkpoint import CHECKPOINT_KEY, read_checkpoint
from ddtse.errors import DdtseError

__all__ = ["IMPORT_FORMATS", "REFERENCE_CLASSES", "import_checkpoint", "read_reference_checkpoint",
           "convert_reference"]


# ------------------------------------------------------------------------------------------
# reading: weights_only with an allowlist of inert stand-ins
# ------------------------------------------------------------------------------------------
class ReferenceClass:
    """Stands for a class that a reference checkpoint pickles by name; it does nothing."""

    reference_name = ""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return f"<reference class {self.reference_name}>"


def _placeholder(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (ReferenceClass,), {"reference_name": name, "__module__": __name__})


class AttributeDictAsDict:
    """Lightning's AttributeDict (a dict subclass) read as a plain dict: unpickling calls
    ``__new__``, which returns an empty dict that the pickle's items then fill."""

    def __new__(cls, *args, **kwargs):
        return {}


#: the reference class names allowed in a reference checkpoint -> what they load as
REFERENCE_CLASSES: dict[str, type] = {
    "sgmse.data_module.SpecsDataModule": _placeholder("sgmse.data_module.SpecsDataModule"),
    "pytorch_lightning.utilities.parsing.AttributeDict": AttributeDictAsDict,
    "lightning_fabric.utilities.data.AttributeDict": AttributeDictAsDict,
    "lightning.fabric.utilities.data.AttributeDict": AttributeDictAsDict,
    "lightning.pytorch.utilities.parsing.AttributeDict": AttributeDictAsDict,
}


def read_reference_checkpoint(path: str | Path) -> dict:
    """A reference Lightning checkpoint as plain data (weights_only, ``REFERENCE_CLASSES`` allowed)."""
    pairs = [(cls, name) for name, cls in REFERENCE_CLASSES.items()]
    with torch.serialization.safe_globals(pairs):
        return read_checkpoint(path, what="reference checkpoint")


# ------------------------------------------------------------------------------------------
# formats
# ------------------------------------------------------------------------------------------
#: NCSN++ constructor defaults shared by both references (score_sde's)
_NCSNPP_DEFAULTS = dict(
    scale_by_sigma=True, nonlinearity="swish", nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2,
    attn_resolutions=(16,), resamp_with_conv=True, conditional=True, fir=True, fir_kernel=(1, 3, 3, 1),
    skip_rescale=True, progressive="output_skip", progressive_input="input_skip",
    progressive_combine="sum", init_scale=0.0, fourier_scale=16, image_size=256, embedding_type="fourier",
    dropout=0.0, centered=True,
)
#: data-module defaults (both references' SpecsDataModule)
_DATA_DEFAULTS = dict(n_fft=510, hop_length=128, window="hann", spec_factor=0.15, spec_abs_exponent=0.5,
                      normalize="noisy", transform_type="exponent", sr=16000)
#: OUVE defaults (sdes.OUVESDE and the LightningModules' t_eps)
_SDE_DEFAULTS = dict(sde="ouve", theta=1.5, sigma_min=0.05, sigma_max=0.5, N=30, t_eps=0.03)


@dataclass
class ImportFormat:
    """How one reference's checkpoints map to a ddtse system."""

    name: str
    system: str  # our SYSTEMS name
    backbones: dict[str, dict]  # their backbone name -> options fixed by that class
    defaults: dict  # their constructor defaults
    required: dict  # option -> the only value this import supports (else: another layout)
    in_channels: int
    time_conditional: bool
    speaker: dict | None
    film_layout: str
    sampler: Callable[[dict], dict]
    fusion_option: str | None = None  # hyper-parameter that switches the bottleneck concat on
    notes: list[str] = field(default_factory=list)


IMPORT_FORMATS: dict[str, ImportFormat] = {
    "slt2024_ddtse": ImportFormat(
        name="slt2024_ddtse", system="ddtse",
        backbones={"conditionalncsnpp": {},
                   "conditionalncsnpp12M": dict(nf=96, ch_mult=(1, 2, 2, 1), num_res_blocks=1, attn_resolutions=(0,))},
        defaults=dict(_NCSNPP_DEFAULTS, resblock_type="conditional_biggan", middle_concat_attention=False,
                      discriminative=False, spk_encoder_backbone=False, middle_film_only=False,
                      middle_concat_attn_only=False, conditional_timestep=False),
        required=dict(resblock_type="conditional_film_biggan", discriminative=True, conditional_timestep=False,
                      spk_encoder_backbone=False, middle_film_only=False, middle_concat_attn_only=False),
        in_channels=2, time_conditional=False, speaker={"name": "precomputed", "dim": 256},
        film_layout="slt2024", fusion_option="middle_concat_attention",
        sampler=lambda hp: {"K": int(hp.get("inference_step", 10) or 10), "seed": 100},
    ),
    "sgmse": ImportFormat(
        name="sgmse", system="sgmse",
        backbones={"ncsnpp": {}},
        defaults=dict(_NCSNPP_DEFAULTS, resblock_type="biggan"),
        required=dict(resblock_type="biggan", conditional=True),
        in_channels=4, time_conditional=True, speaker=None, film_layout="per_channel",
        sampler=lambda hp: {"N": 30, "snr": 0.5, "corrector_steps": 1, "seed": 100},
    ),
}


def _hyper_parameters(ckpt: dict, path) -> dict:
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise DdtseError(f"{path} has no hyper_parameters dict: not a checkpoint written by a reference train.py")
    return dict(hp)


def _option(hp: dict, fmt: ImportFormat, backbone: str, name: str):
    fixed = fmt.backbones[backbone]
    if name in fixed:
        return fixed[name]
    return hp.get(name, fmt.defaults.get(name))


def _check_layout(hp: dict, fmt: ImportFormat, backbone: str, path) -> dict:
    """The resolved reference options; another layout than the one this import reproduces is refused."""
    opts = {name: _option(hp, fmt, backbone, name) for name in fmt.defaults}
    for name, wanted in fmt.required.items():
        if opts[name] != wanted:
            raise DdtseError(f"{path}: {name}={opts[name]!r} is another network layout than the {fmt.name} import "
                             f"reproduces ({name}={wanted!r})")
    for name, wanted in (("nonlinearity", "swish"), ("embedding_type", "fourier"), ("centered", True)):
        if opts[name] != wanted:
            raise DdtseError(f"{path}: {name}={opts[name]!r} is not supported by the {fmt.name} import (needs {wanted!r})")
    if str(opts["progressive"]).lower() not in ("output_skip", "none"):
        raise DdtseError(f"{path}: progressive={opts['progressive']!r} is not supported (output_skip or none)")
    if str(opts["progressive_input"]).lower() not in ("input_skip", "none"):
        raise DdtseError(f"{path}: progressive_input={opts['progressive_input']!r} is not supported (input_skip or none)")
    sde = hp.get("sde", _SDE_DEFAULTS["sde"])
    if sde != "ouve":
        raise DdtseError(f"{path}: sde={sde!r}; only the OUVE SDE is supported")
    data = {k: hp.get(k, v) for k, v in _DATA_DEFAULTS.items()}
    if data["window"] != "hann":
        raise DdtseError(f"{path}: window={data['window']!r}; ddtse's STFT uses the periodic Hann window")
    if data["normalize"] != "noisy":
        raise DdtseError(f"{path}: normalize={data['normalize']!r}; ddtse normalises by the mixture (noisy)")
    return opts


def _ints(value) -> list[int]:
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def build_config(hp: dict, fmt: ImportFormat, opts: dict) -> dict:
    """The resolved ddtse config of the imported system."""
    fusion = bool(opts.get(fmt.fusion_option, False)) if fmt.fusion_option else False
    scale_by_t = bool(opts["scale_by_sigma"]) if fmt.time_conditional else False
    backbone = dict(
        name="ncsnpp", in_channels=fmt.in_channels, out_channels=2, nf=int(opts["nf"]), ch_mult=_ints(opts["ch_mult"]),
        num_res_blocks=int(opts["num_res_blocks"]), attn_resolutions=_ints(opts["attn_resolutions"]),
        bottleneck_attention=True, freq_bins=int(opts["image_size"]), dropout=float(opts["dropout"]),
        resamp_with_conv=bool(opts["resamp_with_conv"]), fir=bool(opts["fir"]),
        fir_kernel=[float(k) for k in opts["fir_kernel"]], skip_rescale=bool(opts["skip_rescale"]),
        init_scale=float(opts["init_scale"]), progressive=str(opts["progressive"]).lower(),
        progressive_input=str(opts["progressive_input"]).lower(),
        progressive_combine=str(opts["progressive_combine"]).lower(), time_conditional=fmt.time_conditional,
        fourier_scale=float(opts["fourier_scale"]), bottleneck_fusion=fusion, film_layout=fmt.film_layout,
        scale_by_t=scale_by_t,
    )
    data = {k: hp.get(k, v) for k, v in _DATA_DEFAULTS.items()}
    sde = {k: hp.get(k, v) for k, v in _SDE_DEFAULTS.items() if k != "sde"}
    return {
        "seed": 0,
        "data": {"sample_rate": int(data["sr"])},
        "model": {"name": "ddtse_net", "backbone": backbone,
                  "speaker": copy.deepcopy(fmt.speaker)},
        "system": {
            "name": fmt.system, "lr": float(hp.get("lr", 1e-4)), "ema_decay": float(hp.get("ema_decay", 0.999)),
            "spec": {"n_fft": int(data["n_fft"]), "hop_length": int(data["hop_length"]),
                     "transform": str(data["transform_type"]), "alpha": float(data["spec_abs_exponent"]),
                     "beta": float(data["spec_factor"])},
            "sde": {"name": "ouve", "theta": float(sde["theta"]), "sigma_min": float(sde["sigma_min"]),
                    "sigma_max": float(sde["sigma_max"]), "t_eps": float(sde["t_eps"]), "N": int(sde["N"])},
        },
        "sampler": fmt.sampler(hp),
    }


# ------------------------------------------------------------------------------------------
# weights: the reference's flat ``all_modules`` list -> our named modules
# ------------------------------------------------------------------------------------------
_RESBLOCK = {"GroupNorm_0": "norm_0", "Conv_0": "conv_0", "Dense_0": "dense_0", "GroupNorm_1": "norm_1",
             "Conv_1": "conv_1", "Conv_2": "skip", "scale_linear": "film.gamma", "bias_linear": "film.beta"}
_ATTN = {"GroupNorm_0": "norm", "NIN_0": "q", "NIN_1": "k", "NIN_2": "v", "NIN_3": "out"}


def reference_modules(backbone: dict) -> list[tuple[str | None, str]]:
    """Our module name (None: dropped) and kind of each ``all_modules.<i>`` of the reference
    NCSN++, in the reference's construction order, for our backbone config ``backbone``."""
    entries: list[tuple[str | None, str]] = []
    tc = backbone["time_conditional"]
    levels = len(backbone["ch_mult"])
    attn_levels = {i for i in range(levels) if backbone["freq_bins"] // 2 ** i in backbone["attn_resolutions"]}
    blocks = backbone["num_res_blocks"]
    entries.append(("time_embed.fourier" if tc else None, "plain"))  # computed even when unused
    if tc:
        entries += [("time_embed.dense_0", "plain"), ("time_embed.dense_1", "plain")]
    entries.append(("conv_in", "plain"))
    for level in range(levels):
        for b in range(blocks):
            entries.append((f"down.{level}.blocks.{b}", "resblock"))
            if level in attn_levels:
                entries.append((f"down.{level}.attns.{b}", "attn"))
        if level != levels - 1:
            entries.append((f"down.{level}.downsample", "resblock"))
            if backbone["progressive_input"] == "input_skip":
                entries.append((f"down.{level}.combine", "combine"))
    entries.append(("mid_block_0", "resblock"))
    if backbone["bottleneck_fusion"]:
        entries.append(("mid_fusion.proj", "plain"))
    entries += [("mid_attn", "attn"), ("mid_block_1", "resblock")]
    for j, level in enumerate(reversed(range(levels))):
        for b in range(blocks + 1):
            entries.append((f"up.{j}.blocks.{b}", "resblock"))
        if level in attn_levels:
            entries.append((f"up.{j}.attn", "attn"))
        if backbone["progressive"] == "output_skip":
            entries += [(f"up.{j}.pyramid_norm", "plain"), (f"up.{j}.pyramid_conv", "plain")]
        if level != 0:
            entries.append((f"up.{j}.upsample", "resblock"))
    if backbone["progressive"] != "output_skip":
        entries += [("norm_out", "plain"), ("conv_out", "plain")]
    return entries


def _our_name(ref_key: str, entries, time_conditional: bool) -> tuple[str | None, bool]:
    """(our parameter name or None to drop, transpose NIN) for a reference ``dnn.`` key."""
    parts = ref_key.split(".")
    if parts[0] == "output_layer":
        return ref_key, False
    if parts[0] != "all_modules" or len(parts) < 3 or not parts[1].isdigit():
        raise DdtseError(f"unexpected reference tensor dnn.{ref_key}: another network layout")
    index = int(parts[1])
    if index >= len(entries):
        raise DdtseError(f"reference tensor dnn.{ref_key} has no counterpart: the network has more modules "
                         f"than its hyper_parameters describe (another layout)")
    ours, kind = entries[index]
    rest = parts[2:]
    if ours is None:
        return None, False
    if kind == "plain":
        return ".".join([ours, *rest]), False
    if kind == "combine" and rest[0] == "Conv_0":
        return ".".join([ours, *rest[1:]]), False
    table = _RESBLOCK if kind == "resblock" else _ATTN if kind == "attn" else {}
    if rest[0] not in table:
        raise DdtseError(f"unexpected reference tensor dnn.{ref_key} in a {kind} block: another network layout")
    if kind == "resblock" and rest[0] == "Dense_0" and not time_conditional:
        return None, False  # built by the reference, unused without a time embedding
    if kind == "attn" and rest[0].startswith("NIN"):
        return f"{ours}.{table[rest[0]]}.{'weight' if rest[1] == 'W' else 'bias'}", rest[1] == "W"
    return ".".join([ours, table[rest[0]], *rest[1:]]), False


def _convert(tensor: torch.Tensor, transpose: bool) -> torch.Tensor:
    """NIN weights (in, out) -> 1x1 conv weights (out, in, 1, 1)."""
    t = tensor.detach().to(torch.float32).clone()
    return t.t().contiguous()[:, :, None, None] if transpose else t


def convert_reference(ckpt: dict, fmt: ImportFormat, path) -> tuple[dict, dict, dict]:
    """-> (config, system state_dict, provenance) of the ddtse system a reference checkpoint imports to."""
    from ddtse.registry import SYSTEMS

    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not any(str(k).startswith("dnn.") for k in state):
        raise DdtseError(f"{path} is not a reference Lightning checkpoint: no state_dict with the network under dnn.*")
    hp = _hyper_parameters(ckpt, path)
    backbone_name = hp.get("backbone")
    if backbone_name not in fmt.backbones:
        others = [name for name, other in IMPORT_FORMATS.items() if backbone_name in other.backbones]
        hint = f" (use --format {others[0]})" if others else ""
        raise DdtseError(f"{path}: backbone {backbone_name!r} is not a {fmt.name} network (supported: "
                         f"{', '.join(fmt.backbones)}){hint}")
    ema = ckpt.get("ema")
    if not isinstance(ema, dict) or not isinstance(ema.get("shadow_params"), (list, tuple)):
        raise DdtseError(f"{path} has no EMA weights (the torch_ema 'ema' entry with shadow_params); "
                         "the reference evaluates with EMA weights, so it is not imported")
    opts = _check_layout(hp, fmt, backbone_name, path)
    config = build_config(hp, fmt, opts)
    try:
        system = SYSTEMS.get(fmt.system)(copy.deepcopy(config))
    except DdtseError as exc:
        raise DdtseError(f"{path}: its hyper_parameters give a network ddtse cannot build ({exc})") from exc

    dnn = [(k[4:], v) for k, v in state.items() if str(k).startswith("dnn.")]
    shadow = list(ema["shadow_params"])
    if len(shadow) != len(dnn) or any(tuple(s.shape) != tuple(v.shape) for s, (_, v) in zip(shadow, dnn)):
        raise DdtseError(f"{path}: the EMA holds {len(shadow)} tensors that do not match the network's "
                         f"{len(dnn)} parameters in order (another layout)")
    backbone_cfg = config["model"]["backbone"]
    entries = reference_modules(backbone_cfg)
    ours = system.state_dict()
    out = dict(ours)
    filled, dropped = set(), []
    for (ref_key, raw), ema_value in zip(dnn, shadow):
        name, transpose = _our_name(ref_key, entries, backbone_cfg["time_conditional"])
        if name is None:
            dropped.append(f"dnn.{ref_key}")
            continue
        for prefix, value in (("model.backbone.", raw), ("ema_model.backbone.", ema_value)):
            key = prefix + name
            if key not in ours:
                raise DdtseError(f"reference tensor dnn.{ref_key} has no counterpart {key}: another network layout")
            converted = _convert(value, transpose)
            if tuple(converted.shape) != tuple(ours[key].shape):
                raise DdtseError(f"reference tensor dnn.{ref_key} has shape {tuple(value.shape)}, the network its "
                                 f"hyper_parameters describe needs {tuple(ours[key].shape)} (another layout)")
            out[key] = converted
            filled.add(key)
    missing = [k for k in ours if k.startswith(("model.backbone.", "ema_model.backbone.")) and k not in filled]
    if missing:
        raise DdtseError(f"{path}: the reference network lacks {missing[0]} ({len(missing)} tensors): another layout")
    system.load_state_dict(out)  # the imported weights fit the config exactly
    provenance = {"format": fmt.name, "system": fmt.system, "source": str(path), "backbone": backbone_name,
                  "epoch": int(ckpt.get("epoch", 0) or 0), "global_step": int(ckpt.get("global_step", 0) or 0),
                  "ema_num_updates": int(ema.get("num_updates") or 0) if ema.get("num_updates") is not None else None,
                  "dropped": dropped}
    return config, system.state_dict(), provenance


# ------------------------------------------------------------------------------------------
def import_checkpoint(fmt: str, source: str | Path, output: str | Path, overwrite: bool = False) -> dict:
    """Read a reference checkpoint of format ``fmt`` and write it as a ddtse checkpoint at ``output``
    (nothing is written on any error). Returns the provenance record stored in the file."""
    if fmt not in IMPORT_FORMATS:
        raise DdtseError(f"unknown import format {fmt!r} (known: {', '.join(IMPORT_FORMATS)})")
    output = Path(output)
    if output.is_dir():
        raise DdtseError(f"--output names a folder ({output}); give a file name, e.g. {output / 'imported.ckpt'}")
    if output.exists() and not overwrite:
        raise DdtseError(f"{output} exists; give --overwrite to replace it")
    if output.resolve() == Path(source).resolve():
        raise DdtseError("--output must not be the reference checkpoint itself")
    ckpt = read_reference_checkpoint(source)
    config, state_dict, provenance = convert_reference(ckpt, IMPORT_FORMATS[fmt], source)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    try:
        torch.save({CHECKPOINT_KEY: config["system"]["name"], "state_dict": state_dict,
                    "hyper_parameters": {"config": config}, "ddtse_import": provenance}, tmp)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return provenance
