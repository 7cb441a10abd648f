"""Run one research subcommand without ``stylefusion.cli``: ``python -m stylefusion.research.<step>``.

``torchrun -m stylefusion.research.extract`` and in-process tests use this; the ``stylefusion``
console script registers the same ``add_<name>_arguments`` / ``run_<name>`` pairs, so both entry
points parse the same options and treat errors the same way (one line, exit status 2).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Callable, Iterator, Sequence

from stylefusion.errors import StyleFusionError


def run_standalone(name: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                   run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog=f"stylefusion {name}")
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except StyleFusionError as exc:
        print(f"stylefusion {name}: error: {exc}", file=sys.stderr)
        return 2


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's choice). On a busy shared machine 1 is "
                             "often several times faster: idle-waiting threads fight other jobs for cores")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block and restore the previous count after it."""
    import torch

    if not n:
        yield
        return
    if n < 1:
        raise StyleFusionError(f"--threads {n} must be >= 1")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
