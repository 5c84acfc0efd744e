"""The R serving runtime (plumber): ``serve.R`` and ``runtime/*.R`` as package data, and
``launch`` (N plumber processes behind nginx), which the serving-r image and the embedded
mode's R serve command run.

``mlhub.rlang`` finds these files to start and check R models.
"""
