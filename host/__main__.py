"""``python -m host`` — same as the ``kithost`` command."""

import sys

from .cli import main

sys.exit(main())
