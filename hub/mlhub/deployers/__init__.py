"""Deployers: run published models on a backend behind one contract (``base.Deployer``).

``local.LocalDeployer`` serves them as supervised local uWSGI processes (the embedded mode);
``routes`` manages their routes in configurable-http-proxy.
"""
