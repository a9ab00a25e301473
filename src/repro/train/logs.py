"""Log lines of the stage CLIs: timestamped INFO lines of the ``repro`` loggers on stderr."""

from __future__ import annotations

import logging


def setup_logging() -> None:
    """Timestamped INFO lines of the ``repro`` loggers on stderr (the rule's ``{log}``).

    Only the ``repro`` logger gets a handler: Lightning's loggers have their own, and a root
    handler would print their lines twice.
    """
    logger = logging.getLogger("repro")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
