"""Session-wide set-up shared by every test file.

absl's logging handler (absl comes with open-spiel and tensorboard) holds the ``sys.stderr`` of the
moment it was made and closes that stream in ``close()`` unless it is the ``sys.stderr`` of the
moment it is closed. Hydra's ``@hydra.main`` reconfigures logging by closing every live handler, so
a test that runs ``selfplay.cli.main`` in-process under ``capsys`` made absl close pytest's own
session capture stream, and every later test on that xdist worker failed with "I/O operation on
closed file" (seen when test_rllib.py, which imports absl, ran before test_train.py on one worker).
Pointing the handler at the interpreter's real stderr, which absl never closes, keeps one test's
logging set-up from breaking the next.
"""

from __future__ import annotations

import sys

try:
    import absl.logging
except ImportError:  # absl comes with optional extras
    pass
else:
    absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__
