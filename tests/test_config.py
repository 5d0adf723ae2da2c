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
