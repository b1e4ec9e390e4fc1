"""``python -m rnnzoo``: the same as the ``rnnzoo`` command."""

import sys

from rnnzoo.cli import main

sys.exit(main())
