"""``python -m stylefusion`` is the ``stylefusion`` command."""

import sys

from stylefusion.cli import main

sys.exit(main())
