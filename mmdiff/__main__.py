"""``python -m mmdiff ...`` (what ``torchrun`` and ``accelerate launch -m`` call) is the ``mmdiff`` command."""

import sys

from .cli import main

sys.exit(main())
