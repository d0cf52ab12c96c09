"""The sub-commands of ``fastws`` (``python -m fastws``), one module each.

Each module has ``register(commands)``: it adds its parser to the
``argparse`` sub-parsers and sets ``run=<callable(args) -> int>`` as the
parser's default; ``fastws.cli.main`` calls it with the parsed arguments and
exits with what it returns. Expected failures raise ``CommandError`` (or an
``ExchangeAPIError``/``OSError``): the command line prints them as one line,
with the traceback only under ``--debug``; a bad argument raises
``UsageError`` (exit status 2, as argparse's own errors).
"""
from __future__ import annotations

import logging
import math
import sys
from typing import Optional

__all__ = ["CommandError", "COMMANDS", "UsageError", "configure_logging", "require_positive"]

# Sub-command modules, in the order ``fastws --help`` lists them.
COMMANDS = ("demo", "stream", "book", "record", "replay", "bench", "verify", "collect")


class CommandError(Exception):
    """A failure the command line reports as one clear line (exit status 1)."""

    #: The exit status of the command that raised it.
    exit_status = 1


class UsageError(CommandError):
    """A bad argument (a malformed ``--url``, a negative ``--duration``): exit status 2."""

    exit_status = 2


def configure_logging(debug: bool) -> None:
    """Log lines on stderr under ``--debug`` only.

    Otherwise the ``fastws`` loggers are silenced: a command reports what
    matters itself (the error handler's line, a progress line), so a log
    line would say it a second time.
    """
    if debug:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    else:
        logging.getLogger("fastws").addHandler(logging.NullHandler())
        logging.getLogger("fastws").propagate = False


def require_positive(option: str, value: Optional[float]) -> None:
    """Refuse a given ``option`` that is not a positive number (``UsageError``); None passes."""
    if value is not None and not value > 0:     # NaN included
        raise UsageError(f"{option} must be > 0, got {value:g}")
