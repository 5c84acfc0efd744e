"""The R serving runtime (plumber), shipped as package data: ``serve.R`` and ``runtime/*.R``.

No Python runs here; ``mlhub.rlang`` finds these files to start and check R models.
"""
