"""The explorer as a Jupyter widget (anywidget): `explorer.js` in the browser, `ExplorerSession`
in the kernel. The front end sends small requests ({"type": "step", "name": ...}, "channel",
"intervene", "gradcam", "compare"); `handle` answers each with one message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import anywidget
    import traitlets
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError(
        "npmnv2.explore needs anywidget in Jupyter: pip install 'npmnv2[notebooks]' (or pip install anywidget)"
    ) from err

from . import static_html
from .session import ExplorerSession

_HERE = Path(__file__).parent


class ExplorerWidget(anywidget.AnyWidget):
    """Navigate the architecture, see feature maps, kernels, padding and receptive fields, switch
    channels off or change activations (re-run with `run_from`), Grad-CAM at any block, and compare
    with a second model. `session` holds the traced image; `handle(request)` is the whole protocol."""

    _esm = _HERE / "explorer.js"
    _css = _HERE / "explorer.css"
    overview = traitlets.Dict().tag(sync=True)
    interactive = traitlets.Bool(True).tag(sync=True)

    def __init__(self, session: ExplorerSession, **kwargs: Any) -> None:
        super().__init__(overview=session.overview(), **kwargs)
        self.session = session
        self.on_msg(self._on_message)

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        self.send(self.handle(content))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request from the front end -> one answer (errors become {"type": "error"})."""
        s = self.session
        try:
            kind = request.get("type")
            if kind == "step":
                return {"type": "payload", "payload": s.payload(request["name"])}
            if kind == "tiles":
                return {"type": "tiles", "name": request["name"], "tiles": s.tiles(request["name"])}
            if kind == "channel":
                return {"type": "channel", "name": request["name"], "channel": request["channel"],
                        **s.channel(request["name"], int(request["channel"]))}  # fmt: skip
            if kind == "intervene":
                result = s.intervene(request["name"], request["kind"], request.get("channels"))
                return {"type": "intervention", "result": result}
            if kind == "gradcam":
                return {"type": "gradcam", **s.grad_cam(request["block"])}
            if kind == "compare":
                return {"type": "compare", **s.compare(request["name"], int(request.get("channel", 0)))}
            return {"type": "error", "message": f"unknown request {kind!r}"}
        except (KeyError, ValueError, TypeError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            return {"type": "error", "message": str(message)}

    def __repr__(self) -> str:
        top = self.session.top5[0]
        return (
            f"ExplorerWidget({type(self.session.model).__name__}, {len(self.session.steps)} steps; "
            f"prediction {top[2]!r} {top[1]:.3f})"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget where widgets render; a static picture (HTML with PNGs) everywhere else."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if data is not None:
            data["text/html"] = static_html(self.session)
        return bundle
