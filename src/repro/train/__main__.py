"""``python -m repro.train``: the train_model stage (:mod:`repro.train.cli`)."""

import sys

from repro.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
