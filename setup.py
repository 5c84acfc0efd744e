"""mlhub: instant notebook environments and one-click model publishing on JupyterHub.

The repository's top-level folders are fixed by the design (hub/, spawner_profiles/, images/,
extension/, deploy/); ``package_dir`` maps them into the single ``mlhub`` namespace so nothing
generic (``hub``, ``serving``) lands at the top of site-packages.
"""

from setuptools import setup

PACKAGE_DIR = {
    "mlhub": "hub",
    "mlhub.publisher": "hub/publisher",
    "mlhub.deployers": "hub/deployers",
    "mlhub.profiles": "spawner_profiles",
    "mlhub.serving": "images/serving-python/serving",
    "mlhub.extension": "extension/python",
    "mlhub.batch": "hub/batch",
    "mlhub.serving_r": "images/serving-r",
    "mlhub.extension_r": "extension/r",
    "mlhub.images": "hub/images",
}

RUNTIME = [
    "jupyterhub>=6.1,<7",
    # Kubernetes mode: user servers as pods, and idle notebook servers stopped.
    "jupyterhub-kubespawner>=7.1,<8",
    "jupyterhub-idle-culler>=1.4",
    "jupyterlab>=4.2,<5",
    "jupyter_server>=2.10,<3",
    "ipywidgets>=8",
    "tornado>=6.4",
    "traitlets>=5.14",
    "SQLAlchemy>=2.0",
    "PyYAML>=6",
    "jsonschema>=4",
    "cloudpickle>=2",
    "numpy>=1.26",
    "pandas>=2",
    "scikit-learn>=1.4",
    "flask>=3",
    "orjson>=3.8",
    "uwsgi>=2.0.28",
    "requests>=2.31",
    # mlhub batch: data-lake files (Parquet, JSON Lines; any fsspec URL), PostgreSQL, Redis,
    # and its progress bar.
    "pyarrow>=14",
    "fsspec>=2023.1",
    "psycopg[binary]>=3.1",
    "redis>=5",
    "tqdm>=4.66",
    # Kubernetes mode: the KubernetesDeployer's API client and shared watches.
    "kubernetes_asyncio>=29",
    # MLflow models other than scikit-learn ones are served by MLflow's own loader
    # (mlhub.mlflow_models); the skinny package has it without MLflow's server.
    "mlflow-skinny>=3",
]
# DESIGN.md: one `pip install -e .` installs everything a developer needs, so the test and
# lint tools are installed too. Images install the pinned runtime set from their own requirements.
DEVELOPER = [
    "pytest>=8",
    "pytest-asyncio>=0.23",
    "pytest-jupyter[server]>=0.10",
    "pytest-timeout>=2.3",
    "playwright>=1.45",
    "ruff>=0.6",
    "skops>=0.10",
    "xgboost>=2",
    "lightgbm>=4",
    "pyarrow>=14",  # Arrow/Parquet bodies in mlhub.serving (optional at run time)
    "docker>=7.1",  # mlhub images: the Docker engine's API (a developer's and CI's tool)
    # the chart tests: every rendered and built object against Kubernetes 1.28 and the newest
    # OpenAPI schemas it ships (the test cluster is 1.20)
    "kubernetes-validate>=1.30",
    # standard clients the tests call published models with, through the public URL
    "tritonclient[http]>=2.40",
    # the fuzz tests: requests generated from the publisher's and the models' OpenAPI documents
    "schemathesis>=4.3",
]

setup(
    name="mlhub",
    version="0.1.0",
    description="Instant notebook environments and one-click model publishing on JupyterHub",
    python_requires=">=3.10",
    package_dir=PACKAGE_DIR,
    packages=list(PACKAGE_DIR),
    package_data={
        "mlhub": ["jupyterhub_config.py", "proxy_timeouts.js", "templates/*.html"],
        "mlhub.profiles": ["*.yaml", "*.json"],
        "mlhub.publisher": ["openapi.yaml"],
        "mlhub.serving_r": ["*.R", "runtime/*.R"],
        "mlhub.extension_r": ["mlhub/DESCRIPTION", "mlhub/NAMESPACE", "mlhub/R/*.R"],
    },
    data_files=[
        (
            "etc/jupyter/jupyter_server_config.d",
            ["extension/jupyter-config/jupyter_server_config.d/mlhub.json"],
        ),
    ],
    install_requires=RUNTIME + DEVELOPER,
    entry_points={
        "console_scripts": [
            "mlhub = mlhub.cli:main",
        ],
    },
)
