"""mlhub.serving: the Python model server (Flask under uWSGI) behind every published model.

Modules: ``settings`` (environment), ``launch`` (uWSGI argv), ``wsgi`` (the uWSGI entry point),
``app`` (routes and the error mapping), ``model`` (the loaded bundle), ``validation`` (payload
to model input), ``v2`` (Open Inference Protocol), ``auth``, ``metrics``, ``openapi`` and
``check`` (bundle pre-flight). Importing this package loads none of them, so the launcher and
the publisher's ``check`` call stay cheap.
"""
