"""The sub-commands of ``fastws`` (``python -m fastws``), one module each.

Each module has ``register(commands)``: it adds its parser to the
``argparse`` sub-parsers and sets ``run=<callable(args) -> int>`` as the
parser's default; ``fastws.cli.main`` calls it with the parsed arguments and
exits with what it returns. Expected failures raise ``CommandError`` (or an
``ExchangeAPIError``/``OSError``): the command line prints them as one line,
with the traceback only under ``--debug``.
"""
from __future__ import annotations

__all__ = ["CommandError", "COMMANDS"]

# Sub-command modules, in the order ``fastws --help`` lists them.
COMMANDS = ("demo", "stream", "record", "replay", "bench", "verify")


class CommandError(Exception):
    """A failure the command line reports as one clear line (exit status 1)."""
