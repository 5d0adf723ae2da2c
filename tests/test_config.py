import pytest

from ddtse.config import apply_overrides, get, load_config, parse_value, save_config
from ddtse.errors import DdtseError
from ddtse.registry import Registry


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("system: {name: ddtse, lr: 1e-4, ema_decay: 0.999}\ntrainer: {max_epochs: 5}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nsystem: {lr: 5e-5, stage: 2}\n")
    cfg = load_config(tmp_path / "child.yaml", ["trainer.max_epochs=7", "model.nf=16", "system.flag=false"])
    assert cfg["system"] == {"name": "ddtse", "lr": 5e-5, "ema_decay": 0.999, "stage": 2, "flag": False}
    assert cfg["trainer"]["max_epochs"] == 7 and cfg["model"]["nf"] == 16
    assert isinstance(cfg["system"]["lr"], float)
    out = save_config(cfg, tmp_path / "exp" / "config.yaml")
    assert load_config(out) == cfg
    assert list(load_config(out))[:2] == ["model", "system"]


def test_values_parse_like_yaml():
    assert parse_value("1e-4") == 1e-4 and parse_value("3") == 3 and parse_value("[1, 2]") == [1, 2]
    assert parse_value("true") is True and parse_value("abc") == "abc" and parse_value("null") is None


def test_bad_configs_are_clear(tmp_path):
    with pytest.raises(DdtseError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(DdtseError, match="cannot parse"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(DdtseError, match="key=value"):
        apply_overrides({}, ["system.lr"])
    with pytest.raises(DdtseError, match="not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])
    assert get({"a": {"b": 2}}, "a.b") == 2 and get({}, "a.b", 5) == 5


def test_registry_builds_and_names_unknowns():
    reg = Registry("thing")

    @reg.register("box")
    class Box:
        def __init__(self, size=1):
            self.size = size

    assert reg.build({"name": "box", "size": 3}).size == 3
    with pytest.raises(DdtseError, match="unknown thing 'crate'.*box"):
        reg.build({"name": "crate"})
    with pytest.raises(DdtseError, match="bad options for thing 'box'"):
        reg.build({"name": "box", "colour": "red"})
    with pytest.raises(ValueError, match="twice"):
        reg.register("box")(type("Other", (), {}))


# ----------------------------------------------------------------------------- validation
import copy  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ddtse.config import validate_config  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


def small_config() -> dict:
    cfg = load_config(CONF / "model" / "tsb_tiny.yaml")
    part = lambda s, **kw: {"name": "libri2mix", "root": "corpus", "split": s, **kw}  # noqa: E731
    cfg.update({
        "seed": 0,
        "data": {"sample_rate": 8000, "batch_size": 2, "num_workers": 0,
                 "train": part("train-100", segment_seconds=0.5), "valid": part("dev", max_items=2)},
        "system": {"name": "discriminative", "lr": 1e-3, "ema_decay": 0.9},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "precision": 32},
    })
    return cfg


def test_every_shipped_config_validates():
    """Every YAML under conf/ (fragments: the sections they have) passes validation."""
    files = sorted(CONF.rglob("*.yaml"))
    assert len(files) > 20
    for path in files:
        cfg = load_config(path)
        complete = all(k in cfg for k in ("system", "model", "data"))
        validate_config(cfg, complete=complete)


@pytest.mark.parametrize("override, message", [
    ("system.lrr=5", "unknown config key system.lrr (did you mean system.lr?)"),
    ("sytem.lr=5", "unknown config key sytem (did you mean system?)"),
    ("data.batchsize=4", "did you mean data.batch_size?"),
    ("data.train.segment_second=1", "did you mean data.train.segment_seconds?"),
    ("data.train.sample_rate=8000", "data.train.sample_rate is set from data.sample_rate"),
    ("model.H_=3", "unknown config key model.H_ (did you mean model.H?)"),
    ("trainer.max_epoch=3", "did you mean trainer.max_epochs?"),
    ("trainer.logger=false", "trainer.logger is set by train.py"),
    ("system.scheduler.factr=0.5", "did you mean system.scheduler.factor?"),
    ("sampler.K=3", "system 'discriminative' takes no sampler options"),
    ("data.batch_size=four", "config key data.batch_size must be an int, got 'four' (str)"),
    ("data.batch_size=2.5", "data.batch_size must be an int, got 2.5 (float)"),
    ("trainer.max_epochs=x", "trainer.max_epochs must be an int or null, got 'x' (str)"),
    ("trainer.precision=33", "trainer.precision must be one of"),
    ("system.lr=fast", "system.lr must be a number, got 'fast'"),
    ("system.monitor_mode=maximum", "system.monitor_mode must be one of 'min', 'max'"),
    ("system.init_from=[1]", "system.init_from must be a string or null"),
    ("data.train.segment_seconds=long", "data.train.segment_seconds must be a number or null"),
    ("data.train.name=librimix", "unknown dataset 'librimix'"),
    ("seed=abc", "config key seed must be an int"),
])
def test_validation_names_the_key_and_the_closest_valid_one(override, message):
    with pytest.raises(DdtseError) as info:
        validate_config(apply_overrides(small_config(), [override]))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_validation_accepts_good_configs_and_checks_each_system():
    validate_config(small_config())
    cfg = apply_overrides(small_config(), ["system.name=ddtse", "system.stage=2", "sampler.K=3",
                                           "system.checkpoint_every_n_steps=50", "trainer.devices=[0]"])
    cfg["model"] = {"name": "ddtse_net", "backbone": "ncsnpp_tiny"}
    validate_config(cfg, complete=False)
    with pytest.raises(DdtseError, match="system.stage must be one of 1, 2"):
        validate_config(apply_overrides(cfg, ["system.stage=3"]), complete=False)
    with pytest.raises(DdtseError, match="did you mean system.sde.sigma_min"):
        validate_config(apply_overrides(cfg, ["system.sde.sigmamin=0.1"]), complete=False)


def test_registry_reports_constructor_value_errors():
    reg = Registry("thing")

    @reg.register("box")
    class Box:
        def __init__(self, size=1):
            if size < 0:
                raise ValueError("size must be >= 0")

    with pytest.raises(DdtseError, match="bad options for thing 'box': size must be >= 0"):
        reg.build({"name": "box", "size": -1})


def test_base_chains_are_checked(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(DdtseError, match="inherits from itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: 5\n")
    with pytest.raises(DdtseError, match="'base' must be a file name"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("x: 2001-13-45\n")
    with pytest.raises(DdtseError, match="cannot parse"):
        load_config(tmp_path / "d.yaml")


# property-based: whatever YAML or overrides come in, the answer is a config or one DdtseError
SECTION_KEYS = {
    "": ["seed", "data", "model", "system", "sampler", "trainer", "base", "sytem"],
    "system": ["name", "lr", "lrr", "ema_decay", "scheduler", "monitor_mode", "init_from", "val_opts", "stage"],
    "data": ["sample_rate", "batch_size", "train", "valid", "num_workers", "pin_memory", "batchsize"],
    "data.train": ["name", "root", "split", "segment_seconds", "max_items", "seed", "mode"],
    "model": ["name", "H", "N", "speaker", "ipd"],
    "trainer": ["max_epochs", "devices", "precision", "accelerator", "max_epoch", "limit_train_batches"],
    "sampler": ["K", "N", "seed"],
}
short_text = st.text(st.characters(min_codepoint=9, max_codepoint=0x17f), max_size=8)
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                         short_text, st.sampled_from(["ddtse", "discriminative", "libri2mix", "cpu",
                                                                "min", "plateau", "32", "auto"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3)), max_leaves=4)


@st.composite
def overrides(draw):
    section = draw(st.sampled_from(sorted(SECTION_KEYS)))
    key = draw(st.sampled_from(SECTION_KEYS[section]))
    dotted = f"{section}.{key}" if section else key
    value = draw(st.one_of(yaml_values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()
                                           .removesuffix("...").strip()),
                           short_text))
    return f"{dotted}={value}"


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.lists(overrides(), max_size=4), drop=st.sets(st.sampled_from(["data", "model", "system"])))
def test_overrides_give_a_valid_config_or_one_ddtse_error(extra, drop, tmp_path):
    cfg = small_config()
    for key in drop:
        cfg.pop(key)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    try:
        out = validate_config(load_config(path, extra))
    except DdtseError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(out, dict)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(
    st.text(st.characters(min_codepoint=9, max_codepoint=0x17f), max_size=60),
    st.dictionaries(st.sampled_from(SECTION_KEYS[""]), yaml_values, max_size=5).map(yaml.safe_dump),
    st.builds(lambda cfg, patch: yaml.safe_dump({**cfg, **patch}), st.just(small_config()),
              st.dictionaries(st.sampled_from(["system", "data", "trainer", "sampler", "model"]),
                              st.dictionaries(st.sampled_from(sum(SECTION_KEYS.values(), [])), yaml_values,
                                              max_size=3), max_size=2)),
))
def test_generated_yaml_gives_a_valid_config_or_one_ddtse_error(doc, tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(doc)
    try:
        out = validate_config(load_config(path), complete=False)
        validate_config(copy.deepcopy(out))
    except DdtseError as exc:
        assert str(exc) and "\n" not in str(exc)


def test_data_schema_matches_the_datamodule():
    from ddtse.data.datamodule import SHARED_KEYS
    from ddtse.schema import DATA_KEYS, DATASET_PARTS

    assert set(DATA_KEYS) | set(DATASET_PARTS) == set(SHARED_KEYS)


@pytest.mark.parametrize("cfg, option", [
    ({"name": "td_speakerbeam", "N": 16, "B": 16, "H": -3, "X": 2, "R": 1}, "H=-3"),  # torch's RuntimeError
    ({"name": "td_speakerbeam", "N": 16, "B": 16, "H": 16, "X": "a", "R": 1}, "X='a'"),  # a TypeError naming nothing
    ({"name": "dptnet", "n": 0}, "n=0"),  # torch's ValueError about embed_dim
])
def test_registry_names_the_option_a_model_refuses(cfg, option):
    """Any error a model's constructor raises on a bad value is one line naming the option."""
    from ddtse.registry import MODELS

    with pytest.raises(DdtseError) as info:
        MODELS.build(cfg)
    line = str(info.value)
    assert "\n" not in line and f"bad options for model '{cfg['name']}': option {option} is refused" in line
