"""``python -m moltconsole``: same as the ``moltconsole`` command."""

import sys

from moltconsole.cli import main

sys.exit(main())
