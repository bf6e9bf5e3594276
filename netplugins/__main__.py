"""``python -m netplugins install DIR [TYPE...]`` and ``python -m netplugins worker``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netplugins")
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="write the plugin executables into DIR")
    inst.add_argument("directory")
    inst.add_argument("types", nargs="*", help="only these CNI types (default: all)")
    inst.add_argument(
        "--allow-opt-cni-bin", action="store_true", help="allow DIR to be /opt/cni/bin"
    )
    work = sub.add_parser("worker", help="run the warm worker (zygote) on a unix socket")
    work.add_argument("--socket", required=True)
    opts = parser.parse_args(argv)
    if opts.cmd == "worker":
        from netplugins.worker import serve

        serve(opts.socket)
        return 0
    from netplugins.install import install

    for path in install(opts.directory, opts.types or None, opts.allow_opt_cni_bin):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
