"""What the explorer shows, computed in NumPy: one traced forward pass of one image, and, per
step, a small JSON-ready payload (its card, its feature maps as one grayscale PNG sprite, its
kernel, its receptive field and the source of its op). The front end (`explorer.js`) draws it;
the widget asks for payloads lazily, the self-contained page embeds all of them.

Interventions (`intervene`), Grad-CAM at any block (`grad_cam`) and the float/integer comparison
(`compare`) re-run NumPy code and so exist only where a kernel runs: in the widget.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import keyword
import re
import tokenize
from typing import Any

import numpy as np
from PIL import Image

from ..layer_kinds import LAYER_KINDS
from ..ops import softmax
from ..tflite.ops import tflite_op
from ..trace import Step, Trace, op_name

MAX_TILES = 64  # channels shown per step (the first 64)
MAX_TILE = 112  # pixels per tile side: every step of a 224 input at full resolution (larger maps are averaged down)
GRID_COLS = 8
CORNER = 12  # input rows and columns shown next to a stride-2 layer's padding
TOP = 5


def png_base64(array: np.ndarray, mode: str | None = None) -> str:
    """A uint8 array (H, W) or (H, W, 3) as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def block_of(step_name: str) -> str:
    """The architecture block a step belongs to: "stem", "layer.N" or "head"."""
    if step_name.startswith("conv_stem"):
        return "stem"
    match = re.match(r"layer\.\d+", step_name)
    return match.group(0) if match else "head"


def highlight_python(source: str) -> str:
    """Python source as HTML with <span class="kw|str|com|num|def"> around tokens (stdlib tokenize)."""
    out, last_line, last_col = [], 1, 0
    lines = source.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return html.escape(source)
    previous = ""
    for token in tokens:
        (row, col), (end_row, end_col) = token.start, token.end
        if row > last_line:  # the rest of the last line, then the lines in between
            out.append(html.escape(lines[last_line - 1][last_col:]) if last_line <= len(lines) else "")
            out.extend(html.escape(lines[r - 1]) for r in range(last_line + 1, row))
            last_col = 0
        out.append(html.escape(lines[row - 1][last_col:col]) if row <= len(lines) else "")
        text = html.escape(token.string)
        kind = {tokenize.STRING: "str", tokenize.COMMENT: "com", tokenize.NUMBER: "num"}.get(token.type)
        if token.type == tokenize.NAME and keyword.iskeyword(token.string):
            kind = "kw"
        elif token.type == tokenize.NAME and previous in ("def", "class"):
            kind = "def"
        out.append(f'<span class="{kind}">{text}</span>' if kind else text)
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            previous = token.string
        last_line, last_col = end_row, end_col
    return "".join(out)


def op_source(op: Any) -> str:
    """The source of a step's op, or a line saying where it lives when it has none to show."""
    try:
        return inspect.getsource(op)
    except (TypeError, OSError):
        return f"# {op_name(op)}: compiled code (NumPy); its documentation says what it computes.\n"


class ExplorerSession:
    """One image through one model, traced once; payloads per step, made when asked for and kept.

    model: an npmnv2 float model or a `QuantizedMobileNetV2`; pixel_values: its input (N=1);
    image: the uint8 (H, W, 3) picture the network sees (pixel_values turned back into colours);
    other: an optional second model of the same architecture (float next to integer) to compare.
    """

    def __init__(
        self, model: Any, pixel_values: np.ndarray, image: np.ndarray, *, other: Any = None, other_pixels=None
    ) -> None:
        self.model, self.pixel_values, self.image = model, pixel_values, image
        self.other, self.other_pixels = other, other_pixels
        self.trace: Trace = model.trace(pixel_values)
        self.steps: list[Step] = list(self.trace.steps)
        self.index = {s.name: i for i, s in enumerate(self.steps)}
        self.labels = _labels(model)
        self.top5 = self._top(self._probabilities(model(pixel_values)))
        self._payloads: dict[str, dict[str, Any]] = {}
        self._fields = self._receptive_fields()
        self._other_trace: Trace | None = None

    # ---------------------------------------------------------------- what the page shows first
    def overview(self) -> dict[str, Any]:
        """The architecture (blocks and their steps), the input image and the prediction."""
        blocks: dict[str, list[str]] = {}
        for step in self.steps:
            blocks.setdefault(block_of(step.name), []).append(step.name)
        return {
            "model": type(self.model).__name__,
            "integer": self._integer(self.model),
            "blocks": [{"name": b, "steps": names} for b, names in blocks.items()],
            "steps": [s.name for s in self.steps],
            "image": png_base64(self.image),
            "image_size": list(self.image.shape[:2]),
            "top5": self.top5,
            "compare": self.other is not None,
        }

    def payload(self, name: str) -> dict[str, Any]:
        """Everything the front end needs to show step `name` (JSON-ready)."""
        if name not in self.index:
            raise KeyError(
                f"the explorer has no step {name!r}; its steps are {self.steps[0].name} .. {self.steps[-1].name}."
            )
        if name not in self._payloads:
            self._payloads[name] = self._make_payload(self.steps[self.index[name]])
        return self._payloads[name]

    def _make_payload(self, step: Step) -> dict[str, Any]:
        attrs = {k: _plain(v) for k, v in step.attrs.items()}
        source_name = op_name(step.op) if step.op is not None else ""
        payload: dict[str, Any] = {
            "name": step.name,
            "index": self.index[step.name],
            "block": block_of(step.name),
            "kind": step.kind,
            "op": source_name,
            "input_shapes": [list(s) for s in step.input_shapes],
            "output_shape": list(step.output_shape),
            "attrs": attrs,
            "macs": int(step.macs),
            "n_params": int(step.n_params),
            "explain": str(step.explain()),
            "sources": list(step.sources),
            "source_html": highlight_python(op_source(step.op)) if step.op is not None else "",
            "receptive_field": self._fields.get(step.name),
        }
        padding = step.attrs.get("padding")
        if step.kind == "convolution" and padding is not None and len(tuple(padding)) == 4:
            payload["window"] = {
                "kernel": int(step.attrs.get("kernel_size") or _kernel_hwio(step).shape[0]),
                "stride": int(step.attrs.get("stride", 1)),
                "dilation": int(step.attrs.get("dilation", 1)),
                "padding": [int(p) for p in padding],  # top, bottom, left, right
                "input": step.sources[0] if step.sources else "pixel_values",
            }
            if payload["window"]["stride"] >= 2:  # show the real padding on the real input
                source = payload["window"]["input"]
                values = np.asarray(self.pixel_values if source not in self.index else self.trace[source], np.float64)
                h, w = values.shape[2:]  # TF SAME pads the bottom and right most: show that corner, unscaled
                r0, c0 = max(0, h - CORNER), max(0, w - CORNER)
                payload["input_tiles"] = {**_tiles(values[0, :, r0:, c0:], None), "origin": [r0, c0], "full": [h, w]}
        output = np.asarray(step.output)
        if output.ndim == 4:
            payload["tiles"] = _tiles(output[0], step.attrs.get("function"))
        elif output.ndim == 2:
            values = output[0].astype(np.float64)
            order = np.argsort(-values)[:10]
            payload["vector"] = {
                "size": int(values.size),
                "top": [[int(i), float(values[i]), self.labels.get(int(i), "")] for i in order],
                "min": float(values.min()),
                "max": float(values.max()),
            }
        if "kernel" in step.params and step.kind in ("convolution", "linear"):
            kernel = _kernel_hwio(step).astype(np.float64)
            if "tflite_index" in step.attrs:  # stored integers: what multiplies is (w - zero point)
                zero = np.asarray(self.model.op_parameters(step.attrs["tflite_index"])["weight_zero_point"])
                kernel = kernel - (zero if zero.ndim == 0 or kernel.ndim < 2 else zero.reshape(-1))
            payload["kernel"] = _kernel_payload(kernel, payload.get("tiles", {}).get("count", MAX_TILES))
        return payload

    def tiles(self, name: str) -> dict[str, Any] | None:
        """The channel sprite of step `name`, or of the input ("pixel_values"): what a conv step's
        window is drawn on."""
        if name == "pixel_values":
            if "pixel_values" not in self._payloads:
                self._payloads["pixel_values"] = {"tiles": _tiles(np.asarray(self.pixel_values, np.float64)[0], None)}
            return self._payloads["pixel_values"]["tiles"]
        return self.payload(name).get("tiles")

    def channel(self, name: str, channel: int) -> dict[str, Any]:
        """One channel of step `name` at full resolution (a PNG) with its value range."""
        output = np.asarray(self.steps[self.index[name]].output)
        if output.ndim != 4 or not 0 <= channel < output.shape[1]:
            raise ValueError(f"step {name!r} has no channel {channel}.")
        values = output[0, channel].astype(np.float64)
        lo, hi = float(values.min()), float(values.max())
        scaled = np.zeros(values.shape, np.uint8) if hi == lo else np.round((values - lo) / (hi - lo) * 255)
        return {"png": png_base64(scaled.astype(np.uint8), "L"), "min": lo, "max": hi}

    # ---------------------------------------------------------------- interventions (a kernel is needed)
    INTERVENTIONS = ("channels_off", "relu_for_relu6", "relu6_after_bottleneck")

    def intervene(self, name: str, kind: str, channels: list[int] | None = None) -> dict[str, Any]:
        """Change step `name`'s output and run the rest of the network from there (`run_from`):
        channels_off: zero the chosen channels; relu_for_relu6: ReLU instead of the step's ReLU6
        (an activation step); relu6_after_bottleneck: a ReLU6 after a linear projection (the
        `.reduce_1x1.normalization` step). Returns the old and new top-5."""
        step = self.steps[self.index[name]]
        tensor = np.array(step.output, copy=True)
        if kind == "channels_off":
            chosen = [int(c) for c in channels or []]
            if tensor.ndim != 4 or not chosen or not all(0 <= c < tensor.shape[1] for c in chosen):
                raise ValueError(f"channels_off needs channels of {name!r} (0..{tensor.shape[1] - 1}), got {channels}.")
            tensor[:, chosen] = 0
        elif kind == "relu_for_relu6":
            if step.attrs.get("function") != "relu6":
                raise ValueError(
                    f"step {name!r} is not a ReLU6; pick an `.activation` step of an expansion or depthwise layer."
                )
            tensor = np.maximum(np.asarray(step.inputs[0]), 0).astype(tensor.dtype)
        elif kind == "relu6_after_bottleneck":
            if not name.endswith("reduce_1x1.normalization"):
                raise ValueError(f"step {name!r} is not a linear bottleneck; pick a `.reduce_1x1.normalization` step.")
            tensor = np.clip(tensor, 0, 6)
        else:
            raise ValueError(f"unknown intervention {kind!r}; use one of {', '.join(self.INTERVENTIONS)}.")
        output = self.model.run_from(name, tensor, pixel_values=self.pixel_values)
        return {"step": name, "kind": kind, "channels": channels or [], "old": self.top5,
                "new": self._top(self._probabilities(output))}  # fmt: skip

    def grad_cam(self, block: str) -> dict[str, Any]:
        """Grad-CAM of the predicted class at the output of `block` (any block), over the input image."""
        from ..gradients import grad_cam

        candidates = [s.name for s in self.steps if block_of(s.name) == block and np.asarray(s.output).ndim == 4]
        if not candidates:
            raise ValueError(f"block {block!r} has no feature map to explain.")
        layer = block if block in self.index else candidates[-1]
        heat = grad_cam(self.model, self.pixel_values, layer=layer).heatmap[0]
        colours = (_viridis(heat) * 0.6 + self.image / 255 * 0.4) * 255
        return {"block": block, "layer": layer, "png": png_base64(np.clip(colours, 0, 255).astype(np.uint8))}

    def compare(self, name: str, channel: int = 0) -> dict[str, Any]:
        """Step `name` of this model and of the second one side by side (one channel each, on one
        colour scale), their difference map, and where this model's values fall on the other's
        quantization grid (the real numbers its integers can stand for)."""
        if self.other is None:
            raise ValueError("no second model to compare with: explore(model, image, other=...) or --integer.")
        if self._other_trace is None:
            self._other_trace = self.other.trace(self.other_pixels)
        mine = self._real(self.model, self.trace, name)
        theirs_name = _matching_step(self._other_trace, name)
        theirs = self._real(self.other, self._other_trace, theirs_name)
        if mine.shape != theirs.shape:
            raise ValueError(f"{name!r} has shape {mine.shape} here and {theirs.shape} in the other model.")
        diff = mine - theirs
        step_size = self._quant_step(self.other, self._other_trace, theirs_name) or self._quant_step(
            self.model, self.trace, name
        )
        if mine.ndim == 4:
            channel = min(max(int(channel), 0), mine.shape[1] - 1)
            a, b, d = mine[0, channel], theirs[0, channel], diff[0, channel]
        else:
            a, b, d = mine[:1], theirs[:1], diff[:1]
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        bound = float(np.abs(d).max()) or 1.0
        shared = [np.round(_viridis((v - lo) / ((hi - lo) or 1.0)) * 255).astype(np.uint8) for v in (a, b)]
        return {
            "step": name,
            "other_step": theirs_name,
            "channel": channel,
            "max_abs_diff": float(np.abs(diff).max()),
            "quant_step": step_size,
            "in_steps": float(np.abs(diff).max() / step_size) if step_size else None,
            "mine_png": png_base64(shared[0]),
            "theirs_png": png_base64(shared[1]),
            "png": png_base64(_diverging(d / bound)),
            "grid_png": _grid_figure(a, step_size) if step_size else None,
        }

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _integer(model: Any) -> bool:
        return type(model).__name__ == "QuantizedMobileNetV2"

    def _real(self, model: Any, trace: Trace, name: str) -> np.ndarray:
        """Step `name`'s output as real numbers: the integer model's integers dequantized."""
        step = next(s for s in trace.steps if s.name == name)
        values = np.asarray(trace[name], np.float64)
        scale = step.attrs.get("scale")
        if self._integer(model) and scale is not None:
            return (values - np.asarray(step.attrs.get("zero_point", 0))) * np.asarray(scale)
        return values

    def _quant_step(self, model: Any, trace: Trace, name: str) -> float | None:
        """The quantization step of an integer model's step (None for a float model)."""
        if not self._integer(model):
            return None
        scale = next(s for s in trace.steps if s.name == name).attrs.get("scale")
        return float(np.max(scale)) if scale is not None else None

    def _probabilities(self, output: Any) -> np.ndarray:
        if self._integer(self.model):
            values = np.asarray(output.dequantized[0], np.float64)
            return values[0] if values.ndim == 2 else values.reshape(-1)
        logits = np.asarray(output.logits, np.float64)
        if logits.ndim != 2:  # segmentation: the class share of the map
            classes = logits.argmax(axis=1)[0]
            return np.bincount(classes.ravel(), minlength=logits.shape[1]) / classes.size
        return softmax(logits, axis=-1)[0]

    def _top(self, probabilities: np.ndarray) -> list[list[Any]]:
        order = np.argsort(-probabilities, kind="stable")[:TOP]
        return [[int(i), float(probabilities[i]), self.labels.get(int(i), f"class {int(i)}")] for i in order]

    def _receptive_fields(self) -> dict[str, dict[str, Any]]:
        """Per step: which input pixels output pixel (y, x) sees, as start + index * jump and a
        size, along y and x (start may be negative: padding)."""
        fields: dict[str, dict[str, Any]] = {"pixel_values": {"start": [0, 0], "jump": [1, 1], "size": [1, 1]}}
        height, width = self.image.shape[:2]
        for step in self.steps:
            known = [fields[s] for s in step.sources if s in fields]
            if not known or np.asarray(step.output).ndim != 4:
                fields[step.name] = {"start": [0, 0], "jump": [height, width], "size": [height, width], "whole": True}
                continue
            base = max(known, key=lambda f: f["size"][0])
            if step.kind == "convolution":
                k = int(step.attrs.get("kernel_size") or _kernel_hwio(step).shape[0])
                s, d = int(step.attrs.get("stride", 1)), int(step.attrs.get("dilation", 1))
                top, _, left, _ = (int(p) for p in step.attrs.get("padding", (0, 0, 0, 0)))
                fields[step.name] = {
                    "start": [base["start"][0] - top * base["jump"][0], base["start"][1] - left * base["jump"][1]],
                    "jump": [base["jump"][0] * s, base["jump"][1] * s],
                    "size": [
                        base["size"][0] + (k - 1) * d * base["jump"][0],
                        base["size"][1] + (k - 1) * d * base["jump"][1],
                    ],
                }
            elif step.kind in ("pooling",) or np.asarray(step.output).shape[2:] == (1, 1):
                fields[step.name] = {"start": [0, 0], "jump": [height, width], "size": [height, width], "whole": True}
            else:  # elementwise (batch norm, activation, add, resize of a pooled map...)
                fields[step.name] = dict(base)
        del fields["pixel_values"]
        return fields


# ============================================================================ pure helpers


def _labels(model: Any) -> dict[int, str]:
    config = getattr(model, "config", None) or getattr(model, "float_config", None)
    id2label = getattr(config, "id2label", None) if config is not None and not isinstance(config, dict) else None
    if id2label is None and isinstance(config, dict):
        id2label = config.get("id2label")
    return {int(k): str(v) for k, v in (id2label or {}).items()}


def _plain(value: Any) -> Any:
    """An attribute as JSON: numbers, strings and lists of them."""
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 16 else f"array {value.shape}"
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _tiles(maps: np.ndarray, function: str | None) -> dict[str, Any]:
    """The first MAX_TILES channels of (C, H, W) maps as one grayscale sprite, each channel scaled
    to 0..255 between its own min and max (the front end recolours them on a shared or a
    per-channel scale from `mins` / `maxs`)."""
    maps = np.asarray(maps, np.float64)
    c, h, w = maps.shape
    count = min(c, MAX_TILES)
    factor = max(1, -(-max(h, w) // MAX_TILE))  # average factor x factor blocks down to <= MAX_TILE
    th, tw = -(-h // factor), -(-w // factor)
    rows = -(-count // GRID_COLS)
    sprite = np.zeros((rows * th, GRID_COLS * tw), np.uint8)
    mins, maxs, clipped = [], [], []
    for i in range(count):
        values = maps[i]
        lo, hi = float(values.min()), float(values.max())
        mins.append(lo)
        maxs.append(hi)
        if function == "relu6":
            clipped.append(float(np.mean((values <= 0) | (values >= 6))))
        elif function == "relu":
            clipped.append(float(np.mean(values <= 0)))
        padded = np.pad(values, ((0, th * factor - h), (0, tw * factor - w)), mode="edge")
        small = padded.reshape(th, factor, tw, factor).mean(axis=(1, 3))
        scaled = np.zeros_like(small) if hi == lo else (small - lo) / (hi - lo) * 255
        r, col = divmod(i, GRID_COLS)
        sprite[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = np.round(scaled).astype(np.uint8)
    return {
        "sprite": png_base64(sprite, "L"),
        "count": count,
        "channels": c,
        "cols": GRID_COLS,
        "tile": [th, tw],
        "map": [h, w],
        "mins": mins,
        "maxs": maxs,
        "clipped": clipped if function in ("relu", "relu6") else None,
        "function": function,
    }


def _kernel_hwio(step: Step) -> np.ndarray:
    """The step's kernel as HWIO (depthwise: (KH, KW, C); linear: (C_in, C_out)), whichever
    model traced it (the integer model keeps TFLite's OHWI and (1, KH, KW, C))."""
    kernel = np.asarray(step.params["kernel"])
    row = tflite_op(step.attrs["tflite_op"]) if "tflite_op" in step.attrs else None
    if row is not None and row.weighted:
        return LAYER_KINDS[row.layer].from_tflite(kernel)  # OHWI, (1, KH, KW, C) or (L, C) -> npmnv2's
    return kernel


def _kernel_payload(kernel: np.ndarray, count: int) -> dict[str, Any]:
    """The weights each shown output channel applies, as int8 with one scale: depthwise (KH, KW)
    per channel, conv (KH, KW, C_in), pointwise and linear (C_in)."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim == 3:  # depthwise (KH, KW, C)
        per = kernel[:, :, :count].transpose(2, 0, 1)  # (count, KH, KW)
    elif kernel.ndim == 4:  # (KH, KW, C_in, C_out)
        per = kernel[..., :count].transpose(3, 0, 1, 2)  # (count, KH, KW, C_in)
    else:  # linear (C_in, C_out)
        per = kernel[:, :count].T
    scale = float(np.abs(per).max()) / 127 or 1.0
    data = np.clip(np.round(per / scale), -127, 127).astype(np.int8)
    return {"shape": list(data.shape), "scale": scale, "data": base64.b64encode(data.tobytes()).decode()}


def _matching_step(trace: Trace, name: str) -> str:
    """The other trace's step that holds the same values as `name`: the same name, or the integer
    model's op whose `float_step` is `name` (its conv op equals the float activation)."""
    for step in trace.steps:
        if step.attrs.get("float_step") == name:
            return step.name
    if name in {s.name for s in trace.steps}:
        return name
    raise ValueError(f"the other model has no step holding the values of {name!r}; pick a layer's output step.")


def _grid_figure(values: np.ndarray, step: float) -> str:
    """A histogram of one channel's real values with the quantization grid drawn over it (every
    level when they fit, else every k-th), as a base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 1.8), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = float(values.min()), float(values.max())
    ax.hist(values.ravel(), bins=80, color="#3b5bdb")
    levels = np.arange(np.floor(lo / step), np.ceil(hi / step) + 1) * step
    every = max(1, len(levels) // 60)
    for level in levels[::every]:
        ax.axvline(level, color="#ff2d55", lw=0.5, alpha=0.6)
    shown = f", one line every {every} levels" if every > 1 else ""
    ax.set_xlabel(f"real value; red: the quantization grid (step {step:.3g}{shown})", fontsize=7)
    ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


_VIRIDIS = np.array(
    [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137], [53, 183, 121],
     [109, 205, 89], [180, 222, 44], [253, 231, 37]], np.float64,
) / 255  # fmt: skip


def _viridis(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) viridis colours."""
    position = np.clip(values, 0, 1) * (len(_VIRIDIS) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(_VIRIDIS) - 1)
    t = (position - low)[..., None]
    return _VIRIDIS[low] * (1 - t) + _VIRIDIS[high] * t


def _diverging(values: np.ndarray) -> np.ndarray:
    """(H, W) in [-1, 1] -> uint8 RGB: blue below zero, white at zero, red above."""
    v = np.clip(values, -1, 1)[..., None]
    white = np.ones((*v.shape[:-1], 3))
    red, blue = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    rgb = np.where(v > 0, white * (1 - v) + red * v, white * (1 + v) - blue * v)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
