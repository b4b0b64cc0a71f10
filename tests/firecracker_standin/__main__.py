"""``python -m tests.firecracker_standin [firecracker arguments]``: the stand-in for the ``firecracker`` binary."""

import sys

from tests.firecracker_standin.cli import main

main(sys.argv)
