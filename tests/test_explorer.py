"""The explorer's Python side (issue 22): the session's payloads, the widget's messages in and out
(step, channel, intervention, Grad-CAM, comparison), an intervention equal to `run_from`, the
static fallback, and `npmnv2 explore`."""

from __future__ import annotations

import numpy as np
import pytest

import npmnv2
from npmnv2 import viz
from npmnv2.explorer import page_html, session_for
from npmnv2.explorer.session import MAX_TILES
from npmnv2.tflite.integer_model import QuantizedMobileNetV2


@pytest.fixture(scope="module")
def float_model():
    return npmnv2.MobileNetV2ForImageClassification.from_pretrained("npmnv2/default")


@pytest.fixture(scope="module")
def integer_model():
    return QuantizedMobileNetV2.from_pretrained("npmnv2/default")


@pytest.fixture(scope="module")
def widget(float_model, integer_model, coral_dir):
    return npmnv2.explore(float_model, coral_dir / "cat.bmp", other=integer_model)


def test_the_overview_has_the_stem_16_blocks_and_the_head(widget):
    overview = widget.overview
    assert [b["name"] for b in overview["blocks"]] == ["stem", *(f"layer.{i}" for i in range(16)), "head"]
    assert len(overview["steps"]) == 158
    assert overview["top5"][0][:1] == [286] and overview["top5"][0][2] == "Egyptian cat"


def test_a_step_message_answers_with_its_payload(widget):
    answer = widget.handle({"type": "step", "name": "layer.3.conv_3x3.convolution"})
    payload = answer["payload"]
    assert answer["type"] == "payload" and payload["output_shape"] == [1, 192, 28, 28]
    assert payload["tiles"]["count"] == min(192, MAX_TILES) and payload["tiles"]["channels"] == 192
    assert payload["window"] == {"kernel": 3, "stride": 1, "dilation": 1, "padding": [1, 1, 1, 1],
                                 "input": "layer.3.expand_1x1.activation"}  # fmt: skip
    assert "def depthwise_conv2d" in payload["source_html"].replace('<span class="kw">def</span>', "def").replace(
        '<span class="def">depthwise_conv2d</span>', "depthwise_conv2d"
    )
    assert payload["kernel"]["shape"] == [MAX_TILES, 3, 3]


def test_the_receptive_field_matches_viz(widget, float_model):
    table = viz.receptive_field_table(float_model.config, 224)
    for layer in ("conv_stem.first_conv", "layer.3.conv_3x3", "layer.12.conv_3x3", "conv_1x1"):
        field = widget.session.payload(f"{layer}.convolution")["receptive_field"]
        assert field["size"] == [table[layer][0]] * 2 and field["jump"] == [table[layer][1]] * 2


def test_a_stride_2_layer_carries_its_real_padding_and_input_corner(widget):
    payload = widget.session.payload("layer.12.conv_3x3.convolution")  # 14x14 -> 7x7
    assert payload["window"]["stride"] == 2 and payload["window"]["padding"] == [0, 1, 0, 1]
    assert payload["input_tiles"]["full"] == [14, 14] and payload["input_tiles"]["origin"] == [2, 2]


def test_a_channel_message_gives_the_full_resolution_map(widget):
    answer = widget.handle({"type": "channel", "name": "conv_stem.first_conv.activation", "channel": 5})
    assert answer["type"] == "channel" and answer["channel"] == 5
    output = widget.session.trace["conv_stem.first_conv.activation"][0, 5]
    assert answer["min"] == pytest.approx(float(output.min())) and answer["max"] == pytest.approx(float(output.max()))


@pytest.mark.parametrize(
    ("name", "kind", "channels"),
    [
        ("layer.5.expand_1x1.activation", "channels_off", [0, 3, 7]),
        ("layer.2.conv_3x3.activation", "relu_for_relu6", None),
        ("layer.6.reduce_1x1.normalization", "relu6_after_bottleneck", None),
    ],
)
def test_an_intervention_equals_run_from(widget, float_model, name, kind, channels):
    answer = widget.handle({"type": "intervene", "name": name, "kind": kind, "channels": channels})
    assert answer["type"] == "intervention"
    session = widget.session
    step = session.steps[session.index[name]]
    tensor = np.array(step.output, copy=True)
    if kind == "channels_off":
        tensor[:, channels] = 0
    elif kind == "relu_for_relu6":
        tensor = np.maximum(np.asarray(step.inputs[0]), 0).astype(tensor.dtype)
    else:
        tensor = np.clip(tensor, 0, 6)
    logits = float_model.run_from(name, tensor, pixel_values=session.pixel_values).logits[0]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    new = answer["result"]["new"]
    assert [row[0] for row in new] == list(np.argsort(-probabilities, kind="stable")[:5])
    assert new[0][1] == pytest.approx(float(probabilities.max()), rel=1e-5)
    assert answer["result"]["old"] == session.top5


def test_bad_requests_are_error_messages_not_exceptions(widget):
    assert widget.handle({"type": "step", "name": "layer.99"})["type"] == "error"
    wrong = widget.handle({"type": "intervene", "name": "layer.2.conv_3x3.convolution", "kind": "relu_for_relu6"})
    assert wrong["type"] == "error" and "is not a ReLU6" in wrong["message"]
    assert widget.handle({"type": "nonsense"})["type"] == "error"


@pytest.mark.parametrize("block", ["stem", "layer.4", "layer.15"])
def test_grad_cam_at_any_block(widget, block):
    answer = widget.handle({"type": "gradcam", "block": block})
    assert answer["type"] == "gradcam" and answer["layer"] == (block if block != "stem" else "conv_stem")
    assert len(answer["png"]) > 1000


def test_float_and_integer_are_compared_at_the_same_step(widget):
    answer = widget.handle({"type": "compare", "name": "layer.4.conv_3x3.activation", "channel": 5})
    assert answer["type"] == "compare" and answer["other_step"] == "layer.4.conv_3x3.convolution"
    assert answer["quant_step"] > 0 and 0 < answer["in_steps"] < 50  # float vs integer: a few quantization steps
    assert answer["channel"] == 5 and all(answer[k] for k in ("mine_png", "theirs_png", "png", "grid_png"))


def test_messages_from_the_front_end_are_answered_with_send(widget, monkeypatch):
    sent = []
    monkeypatch.setattr(widget, "send", sent.append)
    widget._on_message(widget, {"type": "step", "name": "pooler"}, [])
    assert sent[0]["type"] == "payload" and sent[0]["payload"]["name"] == "pooler"


def test_where_widgets_are_off_the_cell_shows_a_static_picture(widget):
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "data:image/png;base64," in data["text/html"] and "Egyptian cat" in data["text/html"]


def test_the_page_is_self_contained(widget):
    page = page_html(widget.session)
    assert "default-src 'none'" in page and "<script src" not in page
    assert not any(f'{attr}="http' in page or f"{attr}='http" in page for attr in ("src", "href"))
    assert page.count('"name":"') >= 158
    assert len(page.encode()) < 15 * 2**20


def test_explore_cli_writes_a_page_and_refuses_other_outputs(tmp_path, coral_dir, capsys):
    from npmnv2.cli import main

    assert main(["explore", str(coral_dir / "cat.bmp"), "-o", str(tmp_path / "cat.html")]) == 0
    assert (tmp_path / "cat.html").stat().st_size > 1 << 20
    assert "158 steps" in capsys.readouterr().out
    assert main(["explore", str(coral_dir / "cat.bmp"), "-o", str(tmp_path / "cat.png")]) == 1
    assert ".html" in capsys.readouterr().err


def test_the_integer_model_explores_too(integer_model, coral_dir):
    session = session_for(integer_model, coral_dir / "cat.bmp")
    assert len(session.steps) == len(integer_model.graph.ops)
    payload = session.payload("layer.3.conv_3x3.convolution")
    assert (
        payload["tiles"]["count"] == 64
        and payload["receptive_field"]["size"]
        == [viz.receptive_field_table(npmnv2.MobileNetV2Config(), 224)["layer.3.conv_3x3"][0]] * 2
    )


def test_a_tiles_message_gives_a_steps_or_the_inputs_channels(widget):
    answer = widget.handle({"type": "tiles", "name": "pixel_values"})
    assert answer["type"] == "tiles" and answer["tiles"]["channels"] == 3 and answer["tiles"]["map"] == [224, 224]
    answer = widget.handle({"type": "tiles", "name": "layer.5.expand_1x1.activation"})
    assert answer["tiles"]["channels"] == 192


def test_a_comm_message_from_the_front_end_reaches_handle_and_its_answer_is_sent(widget, monkeypatch):
    """The message as the kernel receives it from anywidget's model.send: a comm message whose data
    has method "custom"; ipywidgets dispatches it to the widget's on_msg handler."""
    sent = []
    monkeypatch.setattr(widget, "send", sent.append)
    message = {"type": "step", "name": "layer.0"}
    widget._handle_msg({"content": {"data": {"method": "custom", "content": message}}, "buffers": []})
    assert sent and sent[0]["type"] == "payload" and sent[0]["payload"]["name"] == "layer.0"


def test_every_step_of_a_224_input_is_shown_at_full_resolution(float_model):
    """Issue 28, item 4: a 112x112 step's tiles (and so its enlarged channel) were a 38x38 downsample."""
    from npmnv2.data_files import sample_image

    session = session_for(float_model, sample_image("cat"))
    for name in ("conv_stem.first_conv.convolution", "layer.0.expand_1x1.activation", "layer.3"):
        tiles = session.payload(name)["tiles"]
        assert tiles["tile"] == tiles["map"], (name, tiles["tile"], tiles["map"])
