"""Command-line interface: ``lvmref demo`` (currently a stub; see README)."""

from __future__ import annotations

import argparse
import sys

DEMO_PLAN = """\
lvmref demo is not implemented yet. When it lands it will:
  1. fit a Gaussian mixture by EM on a built-in data set,
  2. train a Helmholtz machine on Hinton's bars with wake-sleep,
  3. train a VAE on the bundled binarized 8x8 digits,
and write DIR/report.md with plots plus DIR/metrics.json.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lvmref", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train every model on built-in data and write a report")
    demo.add_argument("--out", default="lvmref-demo")
    demo.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "demo":
        sys.stdout.write(DEMO_PLAN)
        return 0
    return 2  # pragma: no cover
