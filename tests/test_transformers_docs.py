"""transformers' documented MobileNetV2 code runs on npmnv2 once the import, `return_tensors="np"`
and a local weights path are swapped.

Each example below is transformers' own (its MobileNetV2 model page and the docstrings of the
classes), written as it reads there, with those three swaps and nothing else, except where a
line is torch itself: `with torch.no_grad():` goes, and `argmax(dim=...)` is NumPy's `argmax(axis=...)`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER
from PIL import Image

import npmnv2

SEGMENTATION = npmnv2.MobileNetV2ForSemanticSegmentation


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, coral_dir):
    """The coral models as transformers checkpoint folders, standing in for the hub ids."""
    root = tmp_path_factory.mktemp("hub")
    folders = {}
    sources = [
        ("mobilenet_v2_1.0_224", "mobilenet_v2_1.0_224_quant.tflite", npmnv2.MobileNetV2ForImageClassification),
        ("deeplabv3_mobilenet_v2_1.0_513", "deeplabv3_mnv2_pascal_quant.tflite", SEGMENTATION),
    ]  # fmt: skip
    for name, source, cls in sources:
        folder = root / name
        cls.from_pretrained(coral_dir / source).save_pretrained(folder)
        npmnv2.MobileNetV2ImageProcessor.from_pretrained(coral_dir / source).save_pretrained(folder)
        folders[name] = str(folder)
    return folders


def test_the_model_page_automodel_example(checkpoints, coral_dir, capsys):
    from npmnv2 import AutoImageProcessor, AutoModelForImageClassification

    image_processor = AutoImageProcessor.from_pretrained(
        checkpoints["mobilenet_v2_1.0_224"],
    )
    model = AutoModelForImageClassification.from_pretrained(
        checkpoints["mobilenet_v2_1.0_224"],
    )

    image = Image.open(coral_dir / "cat.bmp")
    inputs = image_processor(image, return_tensors="np")

    logits = model(**inputs).logits
    predicted_class_id = logits.argmax(axis=-1).item()

    class_labels = model.config.id2label
    predicted_class_label = class_labels[predicted_class_id]
    print(f"The predicted class label is: {predicted_class_label}")
    assert capsys.readouterr().out == "The predicted class label is: Egyptian cat\n"


def test_the_model_page_tf_padding_note(checkpoints):
    from npmnv2 import MobileNetV2Config

    config = MobileNetV2Config.from_pretrained(checkpoints["mobilenet_v2_1.0_224"], tf_padding=True)
    assert config.tf_padding is True and config.num_labels == 1001


def test_the_config_docstring_example():
    from npmnv2 import MobileNetV2Config, MobileNetV2Model

    # Initializing a "mobilenet_v2_1.0_224" style configuration
    configuration = MobileNetV2Config()

    # Initializing a model from the "mobilenet_v2_1.0_224" style configuration
    model = MobileNetV2Model(configuration)

    # Accessing the model configuration
    configuration = model.config
    assert configuration.depth_multiplier == 1.0


def test_the_base_model_docstring_example(checkpoints, coral_dir):
    from npmnv2 import AutoImageProcessor, MobileNetV2Model

    image = Image.open(coral_dir / "cat.bmp")
    image_processor = AutoImageProcessor.from_pretrained(checkpoints["mobilenet_v2_1.0_224"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npmnv2.NpMnV2Warning)  # transformers warns the same: unused classifier
        model = MobileNetV2Model.from_pretrained(checkpoints["mobilenet_v2_1.0_224"])

    inputs = image_processor(image, return_tensors="np")
    outputs = model(**inputs)

    last_hidden_states = outputs.last_hidden_state
    assert list(last_hidden_states.shape) == [1, 1280, 7, 7]


def test_the_image_classification_docstring_example(checkpoints, coral_dir):
    from npmnv2 import AutoImageProcessor, MobileNetV2ForImageClassification

    image = Image.open(coral_dir / "cat.bmp")
    image_processor = AutoImageProcessor.from_pretrained(checkpoints["mobilenet_v2_1.0_224"])
    model = MobileNetV2ForImageClassification.from_pretrained(checkpoints["mobilenet_v2_1.0_224"])

    inputs = image_processor(image, return_tensors="np")
    logits = model(**inputs).logits

    # model predicts one of the 1000 ImageNet classes
    predicted_label = logits.argmax(-1).item()
    assert model.config.id2label[predicted_label] == "Egyptian cat"


def test_the_semantic_segmentation_docstring_example(checkpoints, coral_dir):
    from npmnv2 import AutoImageProcessor, MobileNetV2ForSemanticSegmentation

    image = Image.open(coral_dir / "bird_segmentation.bmp")
    image_processor = AutoImageProcessor.from_pretrained(checkpoints["deeplabv3_mobilenet_v2_1.0_513"])
    model = MobileNetV2ForSemanticSegmentation.from_pretrained(checkpoints["deeplabv3_mobilenet_v2_1.0_513"])

    inputs = image_processor(images=image, return_tensors="np")
    outputs = model(**inputs)

    # logits are of shape (batch_size, num_labels, height, width)
    logits = outputs.logits
    assert logits.shape == (1, 21, 33, 33)
    segmentation = image_processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
    assert segmentation.shape == (513, 513) and 3 in np.unique(segmentation)  # the bird


def test_return_dict_false_gives_transformers_tuples(checkpoints, coral_dir):
    from npmnv2 import AutoImageProcessor, MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation

    processor = AutoImageProcessor.from_pretrained(checkpoints["mobilenet_v2_1.0_224"])
    model = MobileNetV2ForImageClassification.from_pretrained(checkpoints["mobilenet_v2_1.0_224"])
    inputs = processor(Image.open(coral_dir / "cat.bmp"), return_tensors="np")
    as_record = model(**inputs, output_hidden_states=True)
    logits, hidden_states = model(**inputs, output_hidden_states=True, return_dict=False)
    np.testing.assert_array_equal(logits, as_record.logits)
    assert len(hidden_states) == 16
    loss, logits = model(**inputs, labels=np.array([286]), return_dict=False)
    assert loss.shape == () and logits.shape == (1, 1001)
    (only_logits,) = model(**inputs, return_dict=False)
    assert only_logits.shape == (1, 1001)
    seg = MobileNetV2ForSemanticSegmentation.from_pretrained(checkpoints["deeplabv3_mobilenet_v2_1.0_513"])
    seg_inputs = AutoImageProcessor.from_pretrained(checkpoints["deeplabv3_mobilenet_v2_1.0_513"])(
        Image.open(coral_dir / "bird_segmentation.bmp"), return_tensors="np"
    )
    (seg_logits,) = seg(**seg_inputs, return_dict=False)
    assert seg_logits.shape == (1, 21, 33, 33)


def test_preprocess_takes_transformers_arguments_and_both_array_layouts(coral_dir):
    from npmnv2 import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(coral_dir / CORAL_CLASSIFIER)
    image = np.asarray(Image.open(coral_dir / "cat.bmp").convert("RGB"))  # (H, W, 3)
    expected = processor(image)["pixel_values"]
    first = processor.preprocess(image.transpose(2, 0, 1), input_data_format="channels_first")["pixel_values"]
    inferred = processor.preprocess(image.transpose(2, 0, 1))["pixel_values"]
    last = processor.preprocess(
        [image], data_format="channels_last", input_data_format="channels_last", do_resize=None, return_tensors="np"
    ).pixel_values
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(inferred, expected)
    np.testing.assert_array_equal(last, expected.transpose(0, 2, 3, 1))
    batch = processor.preprocess(np.stack([image.transpose(2, 0, 1)] * 2))["pixel_values"]  # (N, C, H, W)
    assert batch.shape == (2, 3, 224, 224)


@pytest.mark.parametrize("kind", ["pt", "jax", "tf"])
def test_torch_jax_or_tf_tensors_are_refused_clearly(kind):
    with pytest.raises(ValueError, match="NumPy only and returns NumPy arrays; use return_tensors='np'"):
        npmnv2.MobileNetV2ImageProcessor()(np.zeros((40, 40, 3), np.uint8), return_tensors=kind)


def test_the_deprecated_feature_extractor_still_works_with_a_warning(coral_dir):
    with pytest.warns(FutureWarning, match="use MobileNetV2ImageProcessor"):
        extractor = npmnv2.MobileNetV2FeatureExtractor()
    assert isinstance(extractor, npmnv2.MobileNetV2ImageProcessor)
    assert extractor(Image.open(coral_dir / "cat.bmp"), return_tensors="np")["pixel_values"].shape == (1, 3, 224, 224)
