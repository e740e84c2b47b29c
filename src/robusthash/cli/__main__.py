"""``python -m robusthash.cli``: the same as the ``robusthash`` command."""

import sys

from . import main

sys.exit(main())
