"""``python -m ocimerge``."""

import sys

from ocimerge.cli import main

sys.exit(main())
