"""``python -m taskloom`` is the ``taskloom`` command."""

import sys

from taskloom.cli import main

sys.exit(main())
