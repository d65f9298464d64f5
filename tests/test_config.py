"""TrainConfig: the case study's defaults, validation messages that name the field, presets."""

import pytest

from mnist_core.config import PRESETS, ConfigError, TrainConfig


def test_defaults_are_the_case_study():
    config = TrainConfig()
    assert (config.model, config.epochs, config.batch_size, config.lr, config.optimizer) == (
        "seed",
        5,
        64,
        0.01,
        "adam",
    )
    assert PRESETS["case-study"].config == config


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"lr": 0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1000}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"model": "resnet9000"}, "model"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"device": "tpu"}, "device"),
        ({"seed": -1}, "seed"),
        ({"train_subset": -5}, "train_subset"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"adam_betas": (0.9, 1.5)}, "adam_betas"),
        ({"cycle_momentum": "no"}, "cycle_momentum"),
    ],
)
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**changes).validate()
    assert error.value.field == field
    assert field in str(error.value)


def test_unknown_model_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="seed"):
        TrainConfig(model="nope").validate()


def test_unavailable_device_is_explained(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        TrainConfig(device="cuda").validate()


def test_round_trip_through_a_plain_dict_and_json():
    import json

    config = TrainConfig(model="fast", lr=0.003, augment=True, adam_betas=(0.7, 0.9))
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_from_dict_rejects_unknown_settings():
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_presets_are_valid_and_named_as_documented():
    assert {"case-study", "fast", "best"} <= set(PRESETS)
    for preset in PRESETS.values():
        preset.config.validate()


def test_problems_lists_every_bad_field_at_once():
    problems = TrainConfig(lr=0, batch_size=0, epochs=3).problems()
    assert set(problems) == {"lr", "batch_size"}
    assert "greater than 0" in problems["lr"]
    assert TrainConfig().problems() == {}


def test_every_preset_has_the_label_the_pages_show():
    from mnist_core.config import preset_label

    assert [preset_label(name) for name in PRESETS] == ["Case study", "Fast", "Best"]
