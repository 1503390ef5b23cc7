"""Read handwritten text lines, paragraphs and pages from images: ``python predict.py examples/*.png``.

The same as ``htr read`` (``htr/cli/read.py``; ``python predict.py --help`` lists the options), kept at the top of
the repository so that the README's command works from a checkout without installing anything.
"""

import sys

from htr.cli.read import main

if __name__ == "__main__":
    sys.exit(main())
