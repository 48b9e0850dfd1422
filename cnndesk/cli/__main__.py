"""``python -m cnndesk.cli ARGS``: the same as ``cnndesk-cli ARGS``."""

import sys

from . import main

sys.exit(main())
