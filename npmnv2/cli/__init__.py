"""The `npmnv2` command line: classify, segment, convert, summary, trace, compare.

Every error is one line on stderr and a non-zero exit code; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..tables import printable
from .checks import compare_parser, verify_parser
from .data import data_parser
from .images import classify_parser, explain_parser, explore_parser, segment_parser
from .model import convert_parser, summary_parser, trace_parser

EPILOG = """examples:
  npmnv2 classify photo.jpg                     (the embedded Coral classifier)
  npmnv2 classify photo.jpg --weights google/mobilenet_v2_1.0_224
  npmnv2 data fetch                             (the public models and photos the tests and notebooks use)
  npmnv2 segment photo.jpg --weights ~/.cache/npmnv2/deeplabv3_mnv2_pascal_quant.tflite -o overlay.png
  npmnv2 explain photo.jpg --weights ../shared/data/coral/mobilenet_v2_1.0_224_quant.tflite -o gradcam.png
  npmnv2 convert mobilenet_v2_1.0_224_quant.tflite converted/
  npmnv2 summary --depth-multiplier 1.0 --image-size 224
  npmnv2 trace cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite --layers 'layer.*' --save acts.npz
  npmnv2 compare cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite --against torch
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 1, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="npmnv2",
        description="MobileNetV2 and DeepLabV3 in readable NumPy: classify, segment, convert, inspect.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, example: str) -> argparse.ArgumentParser:  # one subcommand
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # accepted after the subcommand too; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
        return p

    for define in (
        classify_parser,
        segment_parser,
        explain_parser,
        explore_parser,
        convert_parser,
        summary_parser,
        trace_parser,
        compare_parser,
        data_parser,
        verify_parser,
    ):
        define(add)
    return parser


# Errors that mean npmnv2 itself failed, not that the input was refused with a sentence.
_INTERNAL = (KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError, AssertionError)


def _one_line(err: Exception) -> str:
    """The error as one line. An input refused with a sentence keeps it; running out of memory
    says so; an internal error names itself and asks for a report."""
    if isinstance(err, MemoryError):
        detail = f" ({err})" if str(err) else ""
        return (
            f"ran out of memory{detail}: the input asks for more memory than this machine has; use a smaller "
            "image, model or batch."
        )
    sentence = isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) and " " in err.args[0]
    text = " ".join((err.args[0] if sentence else str(err)).split())  # npmnv2's KeyErrors are sentences
    if (isinstance(err, _INTERNAL) and not sentence) or not text:
        return (
            f"npmnv2 failed unexpectedly ({type(err).__name__}: {text or 'no message'}); this is a bug, not your "
            "input's fault alone: please report it with the command and --debug's traceback."
        )
    if len(text) > MAX_MESSAGE:  # a message quoting a whole file or list: its start names what is wrong
        text = f"{text[: MAX_MESSAGE - 100]} ... ({len(text):,} characters; --debug shows all)"
    return text


MAX_MESSAGE = 500  # characters of the one line an error prints


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("npmnv2: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `npmnv2 ... | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except Exception as err:  # every failure becomes one line, unless --debug
        if args.debug:
            raise
        message = printable(_one_line(err))
        print(f"npmnv2 {args.command}: error: {message}", file=sys.stderr)
        return 1
