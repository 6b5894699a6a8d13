"""Recording a forward pass: every primitive operation as a `Step`, the whole pass as a `Trace`.

The readable layers in `modeling_mobilenet_v2` hand each operation to a recorder (`Recorder`):
`rec.add(name, kind, output, op=..., inputs=...)`, once per conv, batch norm, activation,
residual add, pooling, linear, resize and concat; nothing is hooked or patched. A Trace keeps
the outputs you ask for (all by default, or names / glob patterns), can stop right after a given
step, and can put an edited tensor in place of a step's output (`model.run_from`).

This module also holds what the model's `trace`, `steps`, `run_from`, `step_names` and `summary`
methods do (`trace_forward`, `run_from`, `step_names`; `summary.summarize`); it never imports the model.

Arrays in steps are NCHW (transformers' layout, views of npmnv2's NHWC tensors, no copies).
"""

from __future__ import annotations

import difflib
import fnmatch
import html
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from . import ops
from .architecture import ConvSpec
from .ops import nchw_to_nhwc, nhwc_to_nchw
from .tables import format_table, html_table

# What a step does; `Step.op` names the function that did it.
StepKind = Literal[
    "convolution",
    "batch_norm",
    "activation",
    "residual_add",
    "block_output",
    "pooling",
    "linear",
    "resize",
    "concat",
    "softmax",
    "reshape",
    "quantize",
    "argmax",  # ops of a quantized TFLite graph the float model has no step for
    "backward",  # one op run backward by `npmnv2.gradients` (output: the gradient it passed to its input)
]


class Recorder(Protocol):
    """What the readable layers hand each operation to: a `Trace`, or `NO_TRACE`."""

    def add(
        self,
        name: str,
        kind: StepKind,
        output: np.ndarray,
        *,
        op: Callable[..., Any] | None,
        inputs: Sequence[np.ndarray] = (),
        spec: ConvSpec | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        attrs: Mapping[str, Any] | None = None,
        tf_scope: str = "",
        macs: int | None = None,
    ) -> np.ndarray:
        """Record one step (NHWC arrays; op None for a step that computes nothing); return the
        tensor the forward continues with. macs: given by ops not on a page (the integer model's)."""
        ...


class _NoTrace:
    """A recorder that records nothing: the forward goes on with each output as it is."""

    def add(self, name: str, kind: StepKind, output: np.ndarray, **info: Any) -> np.ndarray:
        return output


NO_TRACE: Recorder = _NoTrace()


class StopForward(Exception):  # noqa: N818 -- a control-flow signal, not an error
    """Raised by a Trace right after its `stop_at` step: nothing after it runs."""


def unknown_name_error(name: str, known: Sequence[str], what: str = "layer") -> KeyError:
    """A KeyError for an unknown step name that lists the closest real ones."""
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = (
        f" Close matches: {', '.join(close)}." if close else f" There are {len(known)} names; see model.step_names()."
    )
    return KeyError(f"unknown {what} {name!r}.{hint}")


class Explanation(str):
    """A step's explanation: a plain str that Jupyter shows as text, not as a quoted string."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{int(n)}"


@dataclass
class Step:
    """One primitive operation of a forward pass, as plain data.

    name: transformers module path ("layer.12.conv_3x3.convolution"); tf_scope: its TF-slim scope.
    kind: what it does (`StepKind`); op: the function that computed it, e.g.
          `npmnv2.ops.depthwise_conv2d` (`inspect.getsource(step.op)` shows the math).
    output / inputs: NCHW arrays (None / () when this step's tensors were not kept).
    sources: the names of the steps that produced `inputs`, in order ("pixel_values" for the input).
    output_shape: NCHW shape, always known.
    params: the arrays it used (npmnv2 layout: HWIO kernels, (KH, KW, C) depthwise).
    attrs: hyper-parameters actually applied (stride, dilation, groups, padding, ...).
    macs: multiply-accumulates executed (whole batch); n_params: learnable parameters used.
    """

    name: str
    kind: StepKind
    output_shape: tuple[int, ...]
    op: Callable[..., Any] | None = None
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output: np.ndarray | None = None
    inputs: tuple[np.ndarray, ...] = ()  # a conv step's input is the unpadded tensor; see attrs["padding"]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    macs: int = 0
    n_params: int = 0
    tf_scope: str = ""
    index: int = 0
    sources: tuple[str, ...] = ()  # the steps whose outputs are this step's inputs ("pixel_values": the input)

    def explain(self) -> Explanation:
        """What this step did, in words, with its real numbers, and which function did it (a str
        that shows as plain text in Jupyter)."""
        text = self._describe()
        if self.op is not None:
            text += f" Computed by {op_name(self.op)}."
        return Explanation(text)

    def _describe(self) -> str:
        """The words come from the op's own page (`npmnv2.ops.PAGE_OF`)."""
        if self.op is None:
            return "no residual here (the stride or the channel count changes): the projection is the output."
        page = ops.PAGE_OF.get(self.op)
        return page.describe(self) if page is not None else self.kind

    def stats(self) -> dict[str, float] | None:
        """min, mean, max, fraction of zeros and of values clipped at 6 (None when not kept)."""
        if self.output is None:
            return None
        x = self.output
        return {
            "min": float(x.min()),
            "mean": float(x.mean()),
            "max": float(x.max()),
            "zeros": float(np.mean(x == 0)),
            "at6": float(np.mean(x == 6)),
        }

    def __repr__(self) -> str:
        kept = "kept" if self.output is not None else "not kept"
        return f"Step({self.name!r}, {self.kind}, {self.output_shape}, macs={_human(self.macs)}, {kept})"

    def _card_rows(self) -> list[list[str]]:
        rows = [["step", f"{self.index}: {self.name}"], ["op", op_name(self.op) if self.op else "-"]]
        rows.append(
            ["in -> out", f"{' + '.join(map(shape_text, self.input_shapes)) or '-'} -> {shape_text(self.output_shape)}"]
        )
        shown = {k: v for k, v in self.attrs.items() if np.ndim(v) == 0 or k == "padding"}
        if shown:
            rows.append(["attrs", ", ".join(f"{k}={v}" for k, v in shown.items())])
        if self.params:
            parts = [f"{k} {shape_text(v.shape)}" for k, v in self.params.items()]
            rows.append(["params", f"{', '.join(parts)} ({self.n_params:,} learnable)"])
        rows.append(["MACs", f"{self.macs:,}"])
        stats = self.stats()
        if stats is not None:
            rows.append(
                [
                    "values",
                    f"min {stats['min']:.3g}, mean {stats['mean']:.3g}, max {stats['max']:.3g}, "
                    f"{stats['zeros']:.0%} zeros, {stats['at6']:.0%} at 6",
                ]
            )
        return rows

    def _repr_html_(self) -> str:
        """A card in Jupyter: name, op, shapes, attributes, parameters, MACs, values and the explanation."""
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._card_rows()
        )
        return f"<table>{cells}</table><p>{html.escape(self.explain())}</p>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def op_name(op: Callable[..., Any]) -> str:
    """`npmnv2.ops.depthwise_conv2d`, `numpy.concatenate`: where to read a step's function."""
    module = getattr(op, "__module__", None) or "numpy"
    name = getattr(op, "__qualname__", repr(op))
    if module.startswith("npmnv2.ops.") and getattr(ops, name, None) is op:
        module = "npmnv2.ops"  # the public name; the op's page is npmnv2.ops.<family>
    return f"{module}.{name}"


def public_layout(kind: StepKind, output: np.ndarray) -> np.ndarray:
    """A step's output in transformers' layout: NCHW, and the classifier's logits (N, L) as
    transformers returns them (not (N, L, 1, 1))."""
    if kind == "linear" and output.ndim == 4 and output.shape[1:3] == (1, 1):
        return output[:, 0, 0, :]
    return nhwc_to_nchw(output) if output.ndim == 4 else output


def internal_layout(tensor: np.ndarray) -> np.ndarray:
    """The inverse of `public_layout`: a step's public tensor (NCHW, or (N, L) logits) back in the
    forward's NHWC layout, (N, L) as (N, 1, 1, L)."""
    return nchw_to_nhwc(tensor) if tensor.ndim == 4 else tensor[:, None, None, :]


class Trace(Mapping):
    """name -> kept NCHW array, plus `steps` (every step that ran, kept or not).

    trace["layer.3"]                  the kept output of a step
    trace.steps, trace.step(name)     the Step records
    trace.table()                     name, kind, shape, min/mean/max, zeros, clipped at 6
    trace.total_macs                  MACs of everything that ran
    """

    def __init__(
        self,
        *,
        keep: Iterable[str] | None = None,
        stop_at: str | None = None,
        replace: Mapping[str, np.ndarray] | None = None,
        tf_padding: bool = True,
    ) -> None:
        self.patterns = None if keep is None else list(keep)
        self.stop_at = stop_at
        self.replace = dict(replace or {})
        self.tf_padding = tf_padding
        self.steps: list[Step] = []
        self._by_name: dict[str, Step] = {}
        self._keep_cache: dict[str, bool] = {}
        self._producers: dict[int, tuple[weakref.ref, str]] = {}  # id of a recorded output -> (the array, its step)
        self.output: Any = None  # the model output, when the forward ran to the end
        self.pixel_values: np.ndarray | None = None
        self.model: Any = None  # the model that ran (`trace_forward` sets both)

    def run_from(self, name: str, tensor: np.ndarray) -> Any:
        """Continue this trace's forward pass with `tensor` (NCHW) in place of step `name`'s output:
        the steps before `name` are this trace's input's, everything after is computed from
        `tensor`. Returns the model output, so an ablated channel shows in the prediction."""
        if self.model is None:
            raise ValueError("run_from: this Trace was not made by model.trace(...); call model.run_from(...).")
        return run_from(self.model, name, tensor, pixel_values=self.pixel_values)

    # ---------------------------------------------------------------- recording (called by the model)
    def keeps(self, name: str) -> bool:
        """Does this trace keep step `name`'s tensor? (Then the forward must not overwrite it.)"""
        if name not in self._keep_cache:
            self._keep_cache[name] = self.patterns is None or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
        return self._keep_cache[name]

    def add(
        self,
        name: str,
        kind: StepKind,
        output: np.ndarray,
        *,
        op: Callable[..., Any] | None,
        inputs: Sequence[np.ndarray] = (),
        spec: ConvSpec | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        attrs: Mapping[str, Any] | None = None,
        tf_scope: str = "",
        macs: int | None = None,
    ) -> np.ndarray:
        """Record one step (NHWC arrays in); return the tensor the forward continues with."""
        if name in self.replace:
            output = self._replacement(name, output)
        page = ops.PAGE_OF.get(op)
        step_attrs: dict[str, Any] = {}
        if spec is not None:
            tf_scope = tf_scope or spec.tf_scope
            step_attrs["layer"] = spec.name  # whose parameters this step uses
            if page is not None and page.spec_attrs is not None:
                step_attrs.update(page.spec_attrs(spec, self.tf_padding))
        step_attrs.update(attrs or {})
        used = dict(params or {})
        if macs is None:
            has_macs = page is not None and page.macs is not None
            macs = page.macs(output.shape, used["kernel"].shape) if has_macs else 0
        n_params = sum(int(v.size) for k, v in used.items() if k not in ("mean", "var"))
        keep = self.keeps(name)
        public = public_layout(kind, output)
        step = Step(
            name=name,
            kind=kind,
            op=op,
            output_shape=tuple(public.shape),
            input_shapes=tuple(tuple(public_layout(kind, x).shape) for x in inputs),
            output=public if keep else None,
            inputs=tuple(public_layout(kind, x) for x in inputs) if keep else (),
            params=used,
            attrs=step_attrs,
            macs=int(macs),
            n_params=n_params,
            tf_scope=tf_scope,
            index=len(self.steps),
            sources=tuple(self._source(x) for x in inputs),
        )
        self._producers[id(output)] = (weakref.ref(output), name)
        self.steps.append(step)
        self._by_name[name] = step
        if name == self.stop_at:
            raise StopForward(name)
        return output

    def _source(self, x: np.ndarray) -> str:
        """The step that produced array `x` (the same object it returned), or "pixel_values"."""
        ref, name = self._producers.get(id(x), (None, "pixel_values"))
        return name if ref is not None and ref() is x else "pixel_values"

    def _replacement(self, name: str, output: np.ndarray) -> np.ndarray:
        new = np.asarray(self.replace[name])
        expected = tuple(nhwc_to_nchw(output).shape) if output.ndim == 4 else output.shape
        if new.ndim == 2 and output.ndim == 4 and output.shape[1:3] == (1, 1):  # logits as transformers gives them
            new = new[:, :, None, None]
        if new.shape != expected:
            raise ValueError(f"run_from at {name!r}: expected an NCHW tensor of shape {expected}, got {new.shape}.")
        new = nchw_to_nhwc(new) if new.ndim == 4 else new
        return np.ascontiguousarray(new, dtype=output.dtype).copy()  # never alias the caller's array

    # ---------------------------------------------------------------- reading
    def step(self, name: str) -> Step:
        if name not in self._by_name:
            raise unknown_name_error(name, list(self._by_name), "step")
        return self._by_name[name]

    def __getitem__(self, name: str) -> np.ndarray:
        step = self.step(name)
        if step.output is None:
            raise KeyError(f"step {name!r} ran but its tensor was not kept; trace again with layers=[{name!r}].")
        return step.output

    def __iter__(self) -> Iterator[str]:
        return (s.name for s in self.steps if s.output is not None)

    def __len__(self) -> int:
        return sum(s.output is not None for s in self.steps)

    @property
    def total_macs(self) -> int:
        return sum(s.macs for s in self.steps)

    def table(self) -> list[dict[str, Any]]:
        """One row per step: name, kind, output shape, MACs and (kept steps) the value statistics."""
        rows = []
        for s in self.steps:
            row = {"name": s.name, "kind": s.kind, "shape": s.output_shape, "macs": s.macs}
            row.update(s.stats() or {})
            rows.append(row)
        return rows

    def _rows_text(self, kept_only: bool = False) -> list[list[str]]:
        rows = []
        for r in self.table():
            if kept_only and "min" not in r:
                continue
            stats = [f"{r[k]:.3g}" if k in r else "-" for k in ("min", "mean", "max")]
            fracs = [f"{r[k]:.0%}" if k in r else "-" for k in ("zeros", "at6")]
            rows.append([r["name"], r["kind"], shape_text(r["shape"]), _human(r["macs"]), *stats, *fracs])
        return rows

    _HEAD = ("name", "kind", "shape (NCHW)", "MACs", "min", "mean", "max", "zeros", "at 6")

    def _foot(self, kept_only: bool) -> str:
        foot = f"{len(self.steps)} steps, {len(self)} kept, {_human(self.total_macs)} MACs"
        hidden = len(self.steps) - len(self)
        if kept_only and hidden:
            foot += (
                f"; {hidden} steps whose tensors were not kept are hidden (trace.format(kept_only=False) lists them)"
            )
        return foot

    def format(self, *, kept_only: bool | None = None) -> str:
        """The table as text: every step, or (kept_only) only the steps whose tensors were kept.
        By default a trace made with layers= shows only its kept steps."""
        kept_only = self.patterns is not None if kept_only is None else kept_only
        return format_table([list(self._HEAD), *self._rows_text(kept_only)]) + "\n" + self._foot(kept_only)

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        kept_only = self.patterns is not None
        return html_table([list(self._HEAD), *self._rows_text(kept_only)], foot=self._foot(kept_only))


class TraceableModel(Protocol):
    """What the functions below need of a model: the float classes, or the integer model."""

    tf_padding: bool

    def forward(self, pixel_values: np.ndarray, *args: Any, rec: Recorder | None = None, **kwargs: Any) -> Any: ...

    def num_parameters(self) -> int: ...

    def step_names(self) -> list[str]: ...


def step_names(model: TraceableModel) -> list[str]:
    """Every step name one forward of `model` records, in execution order (`model.step_names()`,
    read off its layer specs)."""
    return model.step_names()


def check_step_name(model: TraceableModel, name: str, names: list[str] | None = None) -> str:
    """`name` without transformers' `mobilenet_v2.` prefix; a KeyError naming close matches when no
    step has that name."""
    if not isinstance(name, str):
        raise TypeError(f"a step name must be a string such as 'layer.3', got {type(name).__name__} {name!r}.")
    names = step_names(model) if names is None else names
    short = name.removeprefix("mobilenet_v2.")
    if short not in names:
        raise unknown_name_error(name, names)
    return short


def layer_patterns(
    model: TraceableModel, layers: str | Sequence[str] | None, names: list[str] | None = None
) -> list[str] | None:
    """`layers=` (a name, a glob pattern or a list of them; None: every step) as a list of patterns
    without transformers' `mobilenet_v2.` prefix. A pattern that matches no step is a KeyError
    naming close matches; anything but strings is a TypeError."""
    patterns = [layers] if isinstance(layers, str) else layers
    if patterns is None:
        return None
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"layers must be a step name, a glob pattern or a list of them (e.g. 'layer.*.expand_1x1.*'), "
            f"got {layers!r}."
        )
    names = step_names(model) if names is None else names
    patterns = [p.removeprefix("mobilenet_v2.") for p in patterns]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            check_step_name(model, pattern, names)
    return patterns


def trace_forward(
    model: TraceableModel,
    pixel_values: np.ndarray,
    layers: str | Sequence[str] | None = None,
    stop_at: str | None = None,
    **forward_kwargs: Any,
) -> Trace:
    """`model.trace`: run the readable layers step by step and record every operation."""
    names = step_names(model)
    patterns = layer_patterns(model, layers, names)
    if stop_at is not None:
        stop_at = check_step_name(model, stop_at, names)
    trace = Trace(keep=patterns, stop_at=stop_at, tf_padding=model.tf_padding)
    trace.pixel_values, trace.model = pixel_values, model
    try:
        trace.output = model.forward(pixel_values, rec=trace, **forward_kwargs)
    except StopForward:
        pass
    return trace


class _HandOver(Trace):
    """A Trace that hands each step to a consumer as soon as it is recorded, and waits until the
    consumer asks for the next one (see `StepStream`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ready: queue.Queue = queue.Queue(maxsize=1)  # forward -> consumer: a Step, or the end
        self.resume = threading.Semaphore(0)  # consumer -> forward: compute the next step
        self.cancelled = False

    def add(self, name: str, kind: StepKind, output: np.ndarray, **info: Any) -> np.ndarray:
        result = super().add(name, kind, output, **info)
        self.ready.put(("step", self.steps[-1]))
        self.resume.acquire()
        if self.cancelled:
            raise StopForward(name)
        return result


class StepStream(Iterator[Step]):
    """The steps of one forward pass, each computed only when it is asked for (`next(stream)` or a
    for loop): the forward runs in a helper thread that pauses after every step. Closing the stream
    (or dropping it) stops the forward where it is."""

    def __init__(self, model: TraceableModel, pixel_values: np.ndarray) -> None:
        self._model_name = type(model).__name__
        self._trace = _HandOver(tf_padding=model.tf_padding)
        self._trace.pixel_values = pixel_values
        self._started = self._done = False
        self._run = lambda: model.forward(pixel_values, rec=self._trace)

    def _worker(self) -> None:
        try:
            self._trace.output = self._run()
            self._trace.ready.put(("end", None))
        except StopForward:
            self._trace.ready.put(("end", None))
        except BaseException as err:  # the consumer re-raises it
            self._trace.ready.put(("error", err))

    def __next__(self) -> Step:
        if self._done:
            raise StopIteration
        if not self._started:
            self._started = True
            threading.Thread(target=self._worker, daemon=True, name="npmnv2-steps").start()
        else:
            self._trace.resume.release()
        what, value = self._trace.ready.get()
        if what == "step":
            return value
        self._done = True
        if what == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the forward pass after the current step."""
        if self._started and not self._done:
            self._trace.cancelled = True
            self._trace.resume.release()
            self._trace.ready.get()
        self._done = True

    def __del__(self) -> None:
        self.close()

    @property
    def trace(self) -> Trace:
        """The steps computed so far, as a Trace (every tensor kept)."""
        return self._trace

    def __repr__(self) -> str:
        done = len(self._trace.steps)
        if self._done:
            return f"<steps of {self._model_name}: finished after {done} steps>"
        return f"<steps of {self._model_name}: {done} computed so far; next(steps) computes the next one>"


def stream_steps(model: TraceableModel, pixel_values: np.ndarray) -> StepStream:
    """`model.steps`: a `StepStream` over one forward pass."""
    return StepStream(model, pixel_values)


def run_from(model: TraceableModel, name: str, tensor: np.ndarray, *, pixel_values: np.ndarray | None) -> Any:
    """`model.run_from`: the forward again on `pixel_values`, with `tensor` (NCHW) in place of step
    `name`'s output."""
    name = check_step_name(model, name)
    if pixel_values is None:
        raise ValueError(
            "run_from needs the input the edited tensor came from: pass pixel_values=, or continue the trace "
            "it came from with trace.run_from(name, tensor) (the model keeps no input of its own)."
        )
    trace = Trace(keep=[], replace={name: tensor}, tf_padding=model.tf_padding)
    return model.forward(pixel_values, rec=trace)
