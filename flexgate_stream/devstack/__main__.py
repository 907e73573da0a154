"""``python -m flexgate_stream.devstack``: what ``make run`` runs."""

import sys

from flexgate_stream.devstack.launcher import main

sys.exit(main())
