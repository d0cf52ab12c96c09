#!/usr/bin/env python
"""Check an adapter against the interface standard: ``verify_websocket_compliance.py MODULE:CLASS``.

The same as ``python -m fastws verify MODULE:CLASS`` (options ``--no-live``,
``--json``, ``--timeout``, ``--debug``); exits 0 when every check passed.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from fastws.commands import CommandError
from fastws.commands import verify


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the arguments, run the verifier, return the exit status."""
    parser = argparse.ArgumentParser(prog="verify_websocket_compliance.py")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    verify.add_arguments(parser)
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return verify.run(args)
    except CommandError as exc:
        if args.debug:
            raise
        print(f"verify_websocket_compliance.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
