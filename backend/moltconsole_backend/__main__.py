"""``python -m moltconsole_backend``: the backend's verbs, which ``moltconsole VERB`` runs."""

import sys

from moltconsole_backend.cli import main

sys.exit(main())
