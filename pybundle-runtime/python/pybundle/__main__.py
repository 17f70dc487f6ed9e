"""``python -m pybundle run SCRIPT --input JSON``: see ``pybundle.testing``."""

import sys

from .testing import _main

sys.exit(_main())
