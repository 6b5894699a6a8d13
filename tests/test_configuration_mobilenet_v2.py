"""MobileNetV2Config: transformers' defaults, validation, config.json round trips."""

from __future__ import annotations

import json

import pytest
import transformers

from npmnv2 import MobileNetV2Config


def test_defaults_equal_transformers_code_defaults():
    ours, theirs = MobileNetV2Config().to_dict(), transformers.MobileNetV2Config().to_dict()
    for key, value in ours.items():
        if key in ("id2label", "label2id", "problem_type"):
            continue
        assert theirs[key] == value, key
    assert MobileNetV2Config().num_labels == transformers.MobileNetV2Config().num_labels == 2


def test_transformers_config_json_round_trips_with_unknown_keys(tmp_path):
    hf = transformers.MobileNetV2Config(
        depth_multiplier=0.75, num_labels=3, output_stride=16, architectures=["MobileNetV2ForImageClassification"]
    )
    hf.save_pretrained(tmp_path)
    original = json.loads((tmp_path / "config.json").read_text())
    config = MobileNetV2Config.from_json_file(tmp_path / "config.json")
    assert config.depth_multiplier == 0.75 and config.num_labels == 3 and config.output_stride == 16
    assert config.extra["architectures"] == ["MobileNetV2ForImageClassification"]
    config.to_json_file(tmp_path / "again.json")
    written = json.loads((tmp_path / "again.json").read_text())
    assert {k: written[k] for k in original} == original  # every key kept, unknown ones included
    assert set(written) - set(original) <= {"problem_type"}
    back = transformers.MobileNetV2Config.from_pretrained(tmp_path)  # transformers reads what we wrote
    assert back.id2label == hf.id2label and back.depth_multiplier == 0.75


def test_num_labels_and_id2label_agree():
    config = MobileNetV2Config(id2label={"0": "cat", "1": "dog"})
    assert config.num_labels == 2 and config.label2id == {"cat": 0, "dog": 1}
    with pytest.raises(ValueError, match="num_labels=3 but id2label has 2 entries"):
        MobileNetV2Config(num_labels=3, id2label={0: "a", 1: "b"})


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("output_stride", 4, r"output_stride=4 is invalid: allowed values are 8, 16 and 32"),
        ("depth_multiplier", 0, r"depth_multiplier=0 is invalid: must be > 0"),
        ("depth_multiplier", -0.5, r"depth_multiplier=-0.5 is invalid"),
        ("hidden_act", "relu7", r"hidden_act='relu7' is invalid: allowed values are .*relu6"),
        ("num_channels", 0, r"num_channels=0 is invalid: must be >= 1"),
        ("num_channels", 3.0, r"num_channels=3.0 is invalid: expected an int"),
        ("tf_padding", "yes", r"tf_padding='yes' is invalid: expected True or False"),
        ("image_size", 16, r"image_size=16 is invalid: expected an int >= 32"),
        ("layer_norm_eps", 0.0, r"layer_norm_eps=0.0 is invalid: must be > 0"),
        ("classifier_dropout_prob", 1.5, r"classifier_dropout_prob=1.5 is invalid: must be in \[0, 1\]"),
        ("expand_ratio", float("nan"), r"expand_ratio=nan is invalid: expected a finite number"),
        ("problem_type", "ranking", r"problem_type='ranking' is invalid"),
        ("num_labels", -1, r"num_labels=-1 is invalid: expected an int between 0 and 100,000"),
    ],
)
def test_invalid_values_name_field_value_and_allowed(field, value, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV2Config(**{field: value})


def test_misspelt_field_suggests_the_closest():
    with pytest.raises(TypeError, match=r"unknown field 'depth_multipler'. Did you mean 'depth_multiplier'\?"):
        MobileNetV2Config(depth_multipler=0.5)


def test_config_of_another_model_type_is_refused():
    with pytest.raises(ValueError, match=r"model_type is 'resnet', expected 'mobilenet_v2'"):
        MobileNetV2Config.from_dict({"model_type": "resnet"})


def test_non_square_image_size_is_a_pair():
    assert MobileNetV2Config(image_size=[161, 193]).image_hw == (161, 193)
