"""The mlhub R helper package (``mlhub/``: DESCRIPTION, NAMESPACE, R/), shipped as package data
so the hub can install it into the R library that user servers' R kernels use
(``mlhub.rlang.install_helper``).
"""
