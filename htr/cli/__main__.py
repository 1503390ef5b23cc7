"""``python -m htr.cli``: the ``htr`` command without installing it."""

import sys

from htr.cli import main

sys.exit(main())
