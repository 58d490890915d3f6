from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spire_ir.training.spire import TrainConfig
from spire_ir.utils.config import ConfigError, config_to_dict, from_dict, load_config, save_config


def test_round_trip(tmp_path):
    config = load_config(
        TrainConfig, "configs/tiny-smoke.yaml", ["optim.lr=3e-4", "data.crop_scale=[0.5, 1.0]"]
    )
    assert config.optim.lr == 3e-4 and config.data.crop_scale == (0.5, 1.0)
    save_config(config, tmp_path / "config.yaml")
    again = load_config(TrainConfig, tmp_path / "config.yaml")
    assert again == config
    assert config_to_dict(again) == config_to_dict(config)


def test_a_recipe_with_a_folder_degradation_saves_and_loads_back(tmp_path):
    config = load_config(TrainConfig, "recipes/spire-tiny/finetune9.yaml")
    scenes = config.data.folder_degradation["data/spire-mini/train/scenes"]
    assert scenes.parameterized.ranges["upsample"] == (10.0, 16.0) and scenes.p_parameterized == 1.0
    save_config(config, tmp_path / "config.yaml")
    assert load_config(TrainConfig, tmp_path / "config.yaml") == config


ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIGS = sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("configs/ablations/*.yaml"),
                          *ROOT.glob("recipes/*/*.yaml")])  # fmt: skip


def test_the_shipped_configs_are_found():
    assert len(SHIPPED_CONFIGS) >= 20 and ROOT / "recipes/spire-tiny/adaptor.yaml" in SHIPPED_CONFIGS


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads_into_its_command(path):
    from spire_ir.training.base import BaseTrainConfig
    from spire_ir.training.vae import VaeTrainConfig

    errors = []
    for cls in (TrainConfig, BaseTrainConfig, VaeTrainConfig):
        try:
            load_config(cls, path)
            return
        except ConfigError as error:
            errors.append(f"{cls.__name__}: {error}")
    pytest.fail(f"{path} loads into no command's config: " + "; ".join(errors))


def test_unknown_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) optim.learning_rate; valid keys here: lr"
    ):
        load_config(TrainConfig, None, ["optim.learning_rate=1e-4"])
    with pytest.raises(ConfigError, match="max_stepz"):
        from_dict(TrainConfig, {"max_stepz": 3})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("max_steps=ten", "max_steps: expected an integer"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("model.fusion=concat", "model.fusion: 'concat' is not one of"),
        ("data.crop_scale=[0.5]", "data.crop_scale: expected 2 items"),
        ("progress=3", "progress: expected true or false"),
    ],
)
def test_wrong_types_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [override])


def test_int_is_accepted_for_float_and_none_for_optional():
    @dataclass
    class Inner:
        a: float = 0.5
        b: str | None = "x"

    @dataclass
    class Outer:
        inner: Inner = field(default_factory=Inner)

    parsed = from_dict(Outer, {"inner": {"a": 2, "b": None}})
    assert parsed.inner.a == 2.0 and isinstance(parsed.inner.a, float) and parsed.inner.b is None


def test_yaml_booleans_are_read_back_as_the_word_a_choice_expects(tmp_path):
    # YAML 1.1 reads `no` as False: `--set mixed_precision=no` and `mixed_precision: no` mean the string "no"
    config = load_config(TrainConfig, "configs/tiny-smoke.yaml", ["mixed_precision=no"])
    assert config.mixed_precision == "no"
    (tmp_path / "c.yaml").write_text("mixed_precision: no\ndata:\n  degrade: no\n")
    loaded = load_config(TrainConfig, tmp_path / "c.yaml")
    assert loaded.mixed_precision == "no" and loaded.data.degrade is False  # a real bool stays a bool
    with pytest.raises(ConfigError, match=r"mixed_precision: True is not one of"):
        load_config(TrainConfig, "configs/tiny-smoke.yaml", ["mixed_precision=yes"])
