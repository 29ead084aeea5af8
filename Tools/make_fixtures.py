#!/usr/bin/env python3
"""Regenerate the reference fixtures under Fixtures/ (models/, formats/, ops/, tokenizers/, pipelines/).

Usage (from the repository root):

    $(Tools/reference_env.sh) Tools/make_fixtures.py            # pinned reference venv (recommended)
    Tools/make_fixtures.py                                       # any python3 that has the pinned packages
    Tools/make_fixtures.py --only v3-mlm dtypes                  # regenerate a subset
    Tools/make_fixtures.py --list                                # list fixture names

`Tools/reference_env.sh` creates/updates a virtual environment outside the repository from
`Tools/requirements-reference.txt` and prints the path of its python.

Everything is deterministic (fixed seeds, fixed inputs): running the script twice yields the same
bytes with the pinned versions. See Fixtures/README.md for the contract of the files written here.

Structure: this file is the command line; the fixtures are made by the package Tools/fixtures/, one
module per family (its __init__.py has the table): models.py (tiny checkpoints and their references),
trained.py (the trained masked LM), formats.py (PyTorch pickle / zip files), ops.py, tokenization.py,
quantized.py (the quantized references), pipelines.py (transformers' pipeline outputs), over shared
helpers in common.py. fixtures/catalog.py lists every fixture by group (models, formats, ops,
tokenizers, quant, task-tokenizers, pipelines) in the order they are made; --only runs the named
fixtures in that order. To add a fixture, write `fn(root)` (root = the Fixtures/ directory) in its
family's module and list it in catalog.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import fixtures

try:
    import torch
    from safetensors import safe_open

    from fixtures import catalog
    from fixtures.common import DEFAULT_OUT, assert_finite, check_versions, log, quiet_transformers
except ImportError as exc:  # pragma: no cover - environment problem
    fixtures.missing_package(exc)

GROUPS = catalog.GROUPS


def summarize(root: Path) -> None:
    """Re-open every reference with safetensors, print metadata and shapes, and the total size."""
    for ref in sorted((root / "models").glob("*/reference*.safetensors")):
        with safe_open(str(ref), "pt") as f:
            meta = f.metadata()
            shapes = []
            for k in f.keys():
                t = f.get_tensor(k)
                assert_finite(f"{ref}:{k}", t)
                shapes.append(f"{k}{list(t.shape)}:{str(t.dtype).split('.')[-1]}")
        log(f"  {ref.relative_to(root)} [{meta['architecture']}, {meta['model_type']}]: {', '.join(shapes)}")
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    log(f"  {root.name}/ total: {total / 1e6:.2f} MB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture root (default: Fixtures/)")
    ap.add_argument("--only", nargs="*", default=None, help="fixture names to regenerate")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    ap.add_argument("--allow-version-mismatch", action="store_true")
    args = ap.parse_args(argv)

    if args.list:
        for group, group_fixtures in GROUPS.items():
            for name in group_fixtures:
                print(f"{group}/{name}")
        return 0
    check_versions(args.allow_version_mismatch)
    quiet_transformers()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    known = {n for group_fixtures in GROUPS.values() for n in group_fixtures}
    if args.only:
        unknown = set(args.only) - known
        if unknown:
            ap.error(f"unknown fixtures: {sorted(unknown)}")
    root = args.out.resolve()
    for group, group_fixtures in GROUPS.items():
        (root / group).mkdir(parents=True, exist_ok=True)
        for name, fn in group_fixtures.items():
            if args.only and name not in args.only:
                continue
            log(f"[{group}] {name}")
            fn(root)
    log("[summary]")
    summarize(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
