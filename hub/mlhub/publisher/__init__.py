"""The mlhub publisher: a JupyterHub-managed service that publishes and manages models.

``app`` (the service), ``handlers`` (its REST API), ``manager`` (what the API does), ``store``
(SQLAlchemy), ``artifacts`` (content-addressed bundles), ``auth`` (authorization decisions),
``openapi`` (the API description) and ``client`` (a small HTTP client for it).
"""
