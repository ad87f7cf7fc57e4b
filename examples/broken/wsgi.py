"""An app that cannot start: it fails at import time, so deploying it must fail and change nothing."""

raise RuntimeError("examples/broken fails on purpose at import time")

application = None  # never reached
