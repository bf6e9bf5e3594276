"""``python -m netplugins install DIR [TYPE...]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netplugins")
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="write the plugin executables into DIR")
    inst.add_argument("directory")
    inst.add_argument("types", nargs="*", help="only these CNI types (default: all)")
    opts = parser.parse_args(argv)
    from netplugins.install import install

    for path in install(opts.directory, opts.types or None):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
