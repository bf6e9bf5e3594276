"""``python -m overlay``: the same as the ``pyflanneld`` console script."""

import sys

from overlay.main import main

sys.exit(main())
