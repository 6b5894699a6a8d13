"""Step through the real network, interactively: `npmnv2.explore(model, image)` in Jupyter (an
anywidget, plain JavaScript shipped in this folder, no build step), and `write_page`, the same
explorer as one self-contained HTML file (`npmnv2 explore IMAGE -o page.html`).

Everything is computed in NumPy (`ExplorerSession`); the front end (`explorer.js`, `explorer.css`)
only draws the small payloads it is sent: the widget asks for one step at a time, the page embeds
every step. Interventions, Grad-CAM and the float/integer comparison need a Python kernel, so they
exist in the widget only; the page says so where they would be.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .session import ExplorerSession, block_of, png_base64

__all__ = ["ExplorerSession", "block_of", "explore", "page_html", "session_for", "write_page"]


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def session_for(model: Any, image: Any, *, other: Any = None) -> ExplorerSession:
    """Prepare one image for `model` (and `other`) as each takes it, and trace it once.

    image: a path, a PIL image or an HWC array. A float model gets the image resized exactly to
    its config's image_size and normalized to [-1, 1]; the integer model (`QuantizedMobileNetV2`)
    gets the same resize as uint8 pixels, its quantized input.
    """
    pixels, seen = _inputs(model, image)
    other_pixels = _inputs(other, image)[0] if other is not None else None
    return ExplorerSession(model, pixels, seen, other=other, other_pixels=other_pixels)


def _inputs(model: Any, image: Any) -> tuple[np.ndarray, np.ndarray]:
    """(the model's input for `image`, the uint8 (H, W, 3) picture that input stands for)."""
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    if type(model).__name__ == "QuantizedMobileNetV2":
        _, h, w, _ = model.input_shape
        processor = MobileNetV2ImageProcessor(size={"height": h, "width": w}, do_center_crop=False)
        raw = processor.integer_pixels(image)  # uint8 (1, 3, H, W): the input, and the picture it is
        pixels = model.input_from_pixels(raw)
        return pixels, np.asarray(raw[0].transpose(1, 2, 0), np.uint8)
    h, w = model.config.image_hw
    processor = MobileNetV2ImageProcessor(size={"height": h, "width": w}, do_center_crop=False)
    pixels = processor(image)["pixel_values"].astype(model.dtype)
    raw = processor.integer_pixels(image)[0].transpose(1, 2, 0)
    return pixels, np.asarray(raw, np.uint8)


def explore(model: Any, image: Any, *, other: Any = None) -> Any:
    """The explorer widget for `model` on `image` (see `ExplorerWidget`); `other`: a second model
    of the same architecture (the integer model next to the float one) to compare step by step.

    Needs `anywidget` (`pip install 'npmnv2[notebooks]'`). Where widgets do not render (a static
    notebook viewer, GitHub), the cell shows a static picture of the first step instead.
    """
    from .widget import ExplorerWidget

    return ExplorerWidget(session_for(model, image, other=other))


def page_policy(script: str, style: str) -> str:
    """The page's Content-Security-Policy: nothing loads (no network, no other file) but data:
    images, and the one inline script and the one inline style whose SHA-256 it names: an injected
    `<script>`, `onerror=` or `style=` never runs, even on a copy of the page (no 'unsafe-inline')."""
    import base64
    import hashlib

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"

    return f"default-src 'none'; img-src data:; style-src {digest(style)}; script-src {digest(script)}"


def embedded_json(data: Any) -> str:
    """`data` as JSON that is inert inside a `<script type="application/json">` element: every `<`,
    `>` and `&` written as a \\u escape, so no label (`</script>`, `<!--<script>`) can end the
    element or switch the HTML parser into another state; JSON.parse reads the same strings."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_html(session: ExplorerSession, *, title: str = "") -> str:
    """The explorer as one self-contained HTML page: inline JavaScript, CSS and data (every
    step's payload); no server, no network. Interventions are disabled in it, with a note."""
    data = {
        "overview": session.overview(),
        "interactive": False,
        "payloads": {step.name: session.payload(step.name) for step in session.steps},
        "input_tiles": session.tiles("pixel_values"),
    }
    blob = embedded_json(data)
    title = title or f"npmnv2 explorer: {type(session.model).__name__}"
    style = f"""body {{ margin: 16px; }} h1 {{ font: 600 18px system-ui, sans-serif; }}
{_asset("explorer.css")}"""
    script = _asset("explorer.js").replace("export default { render };", "") + _PAGE_SCRIPT
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{page_policy(script, style)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{style}</style></head>
<body><h1>{html.escape(title)}</h1><div id="npx-root"></div>
<script type="application/json" id="npx-data">{blob}</script>
<script type="module">{script}</script></body></html>
"""


# What the page runs after explorer.js: the widget's model, answered from the embedded data.
_PAGE_SCRIPT = """
const data = JSON.parse(document.getElementById("npx-data").textContent);
const listeners = [];
const reply = (msg) => listeners.forEach((cb) => cb(msg));
const model = {
  get: (key) => data[key],
  on: (event, cb) => { if (event === "msg:custom") listeners.push(cb); },
  send: (msg) => setTimeout(() => {
    if (msg.type === "step") {
      reply({ type: "payload", payload: data.payloads[msg.name] });
    } else if (msg.type === "tiles") {
      const tiles = msg.name === "pixel_values" ? data.input_tiles : (data.payloads[msg.name] || {}).tiles;
      reply({ type: "tiles", name: msg.name, tiles });
    }
  }),
};
render({ model, el: document.getElementById("npx-root") });
document.body.dataset.ready = "1";
"""


def write_page(session: ExplorerSession, path: str | Path, *, title: str = "") -> Path:
    """Write `page_html(session)` to `path` atomically (never through a planted link)."""
    from ..formats.atomic import write_file_atomically

    path = Path(path)
    write_file_atomically(path, page_html(session, title=title).encode("utf-8"))
    return path


def static_html(session: ExplorerSession) -> str:
    """What a notebook shows where widgets are off: the input, the prediction and the first
    step's feature maps, as plain HTML with inline PNGs."""
    first = session.payload(session.steps[0].name)
    rows = "".join(
        f"<tr><td>{p:.3f}</td><td>{i}</td><td>{html.escape(label)}</td></tr>" for i, p, label in session.top5
    )
    tiles = first.get("tiles")
    grid = (
        f"<img alt='feature maps of {html.escape(first['name'])}' style='image-rendering:pixelated;width:400px' "
        f"src='data:image/png;base64,{tiles['sprite']}'>"
        if tiles
        else ""
    )
    return (
        "<div><p><b>npmnv2 explorer</b> (static picture: widgets are off here; run the notebook to step "
        "through the network)</p><div style='display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start'>"
        f"<img alt='input' style='image-rendering:pixelated;width:224px;flex:none' src='data:image/png;base64,"
        f"{png_base64(session.image)}'>"
        # flex:none and a minimum width: a site's table style (the docs' theme) must not squash it
        f"<table class='npx-static-top5' style='flex:none;min-width:18em;width:auto'><caption>prediction</caption>"
        f"{rows}</table>"
        f"<div style='flex:none'><div>{html.escape(first['name'])}: {tiles['count'] if tiles else 0} channels</div>"
        f"{grid}</div>"
        "</div></div>"
    )
