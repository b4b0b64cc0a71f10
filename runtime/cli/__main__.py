"""``python -m runtime.cli``: the ``workspaces`` command."""

import sys

from runtime.cli.main import main

sys.exit(main())
