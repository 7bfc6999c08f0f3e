"""``python -m dar_lib.book``: the same as ``dar book``."""

import sys

from dar_lib.book.cli import main

sys.exit(main())
