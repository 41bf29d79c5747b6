"""``python -m vsgx.cli``: the ``vsgx`` command."""

import sys

from vsgx.cli import main

sys.exit(main())
