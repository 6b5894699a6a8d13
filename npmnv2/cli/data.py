"""The `data` command: fetch, locate and check the public models and photos (pinned SHA-256)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data_files import BASE_URL
from ..tables import format_table
from .common import AddParser, CLIError


def cmd_data(args: argparse.Namespace) -> int:
    """data list / data fetch: the public files the tests, notebooks and benchmarks use."""
    from .. import data_files

    if args.action is None:
        raise CLIError("give an action: `npmnv2 data list` (what each file is, and where) or `npmnv2 data fetch`.")

    if args.action == "list":
        folder = Path(args.dest) if args.dest else (data_files.find_data_dir() or data_files.cache_dir())
        order = "; ".join(f"{i}. {why}: {where}" for i, (why, where) in enumerate(data_files.lookup_order(), 1))
        print(f"folder: {folder}  (looked in {order}; --dest lists another)")
        rows = [["file", "status", "bytes", "license", "what"]]
        for entry in data_files.CATALOGUE:
            state = data_files.status(entry, folder) if folder.is_dir() else "missing"
            if state == "missing" and entry.name == data_files.DEFAULT_MODEL_FILE:
                state = "shipped"  # inside the package, npmnv2/default: nothing to fetch
            rows.append([entry.name, state, f"{entry.size:,}", entry.license, entry.what])
        print(format_table(rows))
        print(f"source: {data_files.BASE_URL} (each file checked against a pinned SHA-256)")
        print(
            f"shipped inside the package: {data_files.DEFAULT_MODEL} = {data_files.default_model_path()}, "
            f"photos {', '.join(str(data_files.sample_image(n)) for n in data_files.SAMPLE_IMAGES)}"
        )
        return 0
    folder = Path(args.dest) if args.dest else data_files.cache_dir()
    try:
        data_files.fetch(folder, args.files or None, base_url=args.base_url, report=lambda line: print(line))
    except data_files.DataError as err:
        raise CLIError(str(err)) from None
    print(f"all {len(args.files or data_files.CATALOGUE)} files are in {folder}")
    return 0


def data_parser(add: AddParser) -> None:
    p = add(
        "data",
        "list or fetch the public models and photos the tests, notebooks and benchmarks use",
        "npmnv2 data fetch --dest ~/coral",
    )
    p.add_argument(
        "action", nargs="?", choices=["list", "fetch"], help="list: what each file is and whether it is present"
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="fetch only these files (default: all)")
    p.add_argument("--dest", help="folder to use (default: $NPMNV2_DATA, else ~/.cache/npmnv2)")
    p.add_argument("--base-url", default=BASE_URL, help=f"where to download from (default {BASE_URL})")
    p.set_defaults(func=cmd_data)
