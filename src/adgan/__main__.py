"""``python -m adgan``: the ``adgan`` command (so that ``torchrun -m adgan COMMAND`` works)."""

import sys

from adgan.cli import main

if __name__ == "__main__":
    sys.exit(main())
