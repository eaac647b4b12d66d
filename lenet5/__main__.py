"""python3 -m lenet5: the lenet5 command (lenet5/command.py), from a fresh clone, with any Python."""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 (for older Pythons: say so, before what they cannot parse)
    sys.exit(f"lenet5 needs Python 3.10 or newer; this is {sys.version.split()[0]}")

from .command import main  # noqa: E402

sys.exit(main())
