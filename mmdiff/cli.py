"""The ``mmdiff`` command line: ``mmdiff <command> [options]``."""

from __future__ import annotations

import argparse
import sys

from .core import SAMPLERS

COMMANDS = {"demo": "sample a known distribution with the core's samplers and report their accuracy"}


def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmdiff demo", description=COMMANDS["demo"])
    parser.add_argument("--out", default="demo", help="folder for samples.png (default: demo)")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (default: 20)")
    parser.add_argument("--n", type=int, default=8192, help="samples per sampler (default: 8192)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=["ddpm", "euler", "heun", "dpmpp_2m", "dpmpp_3m"],
        choices=sorted(SAMPLERS),
        metavar="NAME",
        help=f"from: {', '.join(SAMPLERS)}",
    )
    args = parser.parse_args(argv)
    from .demo import run_demo

    run_demo(args.out, args.samplers, args.steps, args.n, args.seed)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mmdiff <command> [options]\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<8}{text}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return _demo(rest)
    print(f"mmdiff: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
