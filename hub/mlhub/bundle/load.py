"""Loading a bundle's model: the only code of mlhub that runs model code (unpickling executes
code), so it is called in the owner's own serving process and nowhere else."""

from pathlib import Path

from mlhub.bundle.manifest import load_manifest
from mlhub.errors import InvalidBundle


def load_model(path, manifest=None):
    """Load the model object of a Python bundle. Runs model code: serving processes only."""
    manifest = manifest or load_manifest(path)
    if manifest["runtime"] != "python":
        raise InvalidBundle(
            f"runtime {manifest['runtime']!r} is not served by the Python runtime",
            {"field": "runtime"},
        )
    model_file = Path(path, manifest["model_file"])
    serialization = manifest.get("serialization", "cloudpickle")
    try:
        if serialization == "mlflow":  # a whole MLflow model (mlhub.bundle.mlflow_models)
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(str(model_file.parent))
        elif serialization == "skops":
            import skops.io as sio

            trusted = manifest.get("skops_trusted", [])
            untrusted = set(sio.get_untrusted_types(file=model_file)) - set(trusted)
            if untrusted:
                raise InvalidBundle(
                    f"the skops file holds types the bundle did not declare: {sorted(untrusted)}",
                    {"field": "skops_trusted"},
                )
            model = sio.load(model_file, trusted=trusted)
        else:
            import cloudpickle

            with open(model_file, "rb") as fh:
                model = cloudpickle.load(fh)
    except InvalidBundle:
        raise
    except ModuleNotFoundError as exc:
        where = (
            "install mlhub's mlflow extra (pip install 'mlhub[mlflow]'), or in Kubernetes mode "
            "serve it with the serving-mlflow image"
            if serialization == "mlflow" and (exc.name or "").split(".")[0] == "mlflow"
            else "add it to the bundle's requirements or use an image that has it"
        )
        raise InvalidBundle(
            f"the model needs the Python package {exc.name!r}, which this serving environment "
            f"lacks; {where}",
            {"field": "requirements", "module": exc.name},
        ) from exc
    except Exception as exc:
        raise InvalidBundle(
            f"{manifest['model_file']} could not be loaded ({type(exc).__name__}: {exc}); "
            "is it a model saved by mlhub.publish?",
            {"field": "model_file"},
        ) from exc
    method = manifest.get("predict_method", "predict")
    if not callable(getattr(model, method, None)):
        raise InvalidBundle(
            f"the loaded object ({type(model).__name__}) has no callable {method}()",
            {"field": "predict_method"},
        )
    return model
