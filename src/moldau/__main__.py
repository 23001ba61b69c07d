"""``python -m moldau``: the moldau command, without relying on its script
being on PATH (the local cluster starts its brokers this way)."""

import sys

from moldau.cli.main import main

sys.exit(main())
