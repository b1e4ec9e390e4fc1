"""`python -m streaming serve|simulate|demo` — the same commands as `rnnzoo`, without the zoo's CLI."""

import sys

from streaming.cli import main

sys.exit(main())
