"""``python -m fastws``: see ``fastws.cli``."""
import sys

from fastws.cli import main

sys.exit(main())
