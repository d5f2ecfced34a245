"""Moved to `talkturo.simcaller.scripts` (the caller side is core: test calls use it on AWS too).

This name stays an alias of that module, so older imports (and patches of it) keep working.
"""

import sys

from talkturo.simcaller import scripts as _moved

sys.modules[__name__] = _moved
