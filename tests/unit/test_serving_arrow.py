"""Arrow IPC stream and Parquet bodies through the app in-process, and what happens without pyarrow.

Predictions from an Arrow or Parquet body must equal those from the same rows sent as JSON, for
an array model and for a DataFrame pipeline with a categorical input; answers come back as an
Arrow stream when asked. pyarrow's absence is simulated by patching ``arrowio._pyarrow``.
"""

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from werkzeug.test import Client

from mlhub.batch.endpoint import encode_arrow
from mlhub.bundle import infer_signature
from mlhub.serving import arrowio
from mlhub.serving.app import create_app
from mlhub.serving.metrics import Metrics
from mlhub.serving.model import ServedModel
from mlhub.serving.settings import Settings

ARROW = arrowio.ARROW_STREAM
PARQUET = arrowio.PARQUET


def served_model(model, example, name):
    signature, rows = infer_signature(example)
    manifest = {"name": name, "flavor": "sklearn", "signature": signature, "example": rows}
    return ServedModel("/b", manifest=manifest, model=model, version="v1")


def client_for(served, **settings):
    app = create_app(Settings(bundle="/b", auth=False, **settings), served, metrics=Metrics())
    return Client(app)


def parquet_bytes(table):
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def array_model():
    X, y = make_classification(500, n_features=6, random_state=1)
    model = LogisticRegression().fit(X, y)
    return model, X, served_model(model, X[:5], "arr")


@pytest.fixture(scope="module")
def frame_model():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=300),
            "count": rng.integers(0, 9, 300),
            "site": pd.Categorical(rng.choice(["a", "b", "c"], 300)),
        }
    )
    y = (frame["size"] + (frame["site"] == "b")) > 0.5
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["site"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, y)
    return pipe, frame, served_model(pipe, frame.iloc[:5], "frame")


@pytest.mark.parametrize("encode, media", [(encode_arrow, ARROW), (parquet_bytes, PARQUET)])
def test_array_model_bodies_equal_json(array_model, encode, media):
    model, X, served = array_model
    client = client_for(served, batching=True, batch_max_size=8)
    rows = X[:40]
    # columns in another order than the signature: matched by name
    names = [f"x{i}" for i in range(6)]
    table = pa.table({name: rows[:, j] for j, name in reversed(list(enumerate(names)))})
    answer = client.post("/v1/predict", data=encode(table), content_type=media)
    assert answer.status_code == 200, answer.json
    as_json = client.post("/v1/predict", json={"instances": rows.tolist()}).json
    assert answer.json == as_json == {"predictions": model.predict(rows).tolist()}


def test_dataframe_pipeline_with_categories(frame_model):
    pipe, frame, served = frame_model
    client = client_for(served)
    sample = frame.iloc[:50]
    table = pa.Table.from_pandas(sample, preserve_index=False)  # site: a dictionary column
    for body, media in ((encode_arrow(table), ARROW), (parquet_bytes(table), PARQUET)):
        answer = client.post("/v1/predict?proba=true", data=body, content_type=media)
        assert answer.status_code == 200, answer.json
        assert answer.json["predictions"] == pipe.predict(sample).tolist()
        assert np.allclose(answer.json["probabilities"], pipe.predict_proba(sample))


def test_arrow_answer_when_accepted(array_model):
    model, X, served = array_model
    client = client_for(served)
    rows = X[:10]
    answer = client.post(
        "/v1/predict?proba=1",
        json={"instances": rows.tolist()},
        headers={"Accept": ARROW},
    )
    assert answer.status_code == 200 and answer.headers["Content-Type"] == ARROW
    table = pa.ipc.open_stream(answer.get_data()).read_all()
    assert table.column_names == ["predictions", "proba_0", "proba_1"]
    assert table.column("predictions").to_pylist() == model.predict(rows).tolist()
    assert np.allclose(table.column("proba_1").to_numpy(), model.predict_proba(rows)[:, 1])


def test_bad_tables_are_400_with_the_reason(array_model, frame_model):
    served = array_model[2]
    client = client_for(served)

    def error(body, media=ARROW, model_client=client):
        answer = model_client.post("/v1/predict", data=body, content_type=media)
        assert answer.status_code == 400, answer.json
        return answer.json["error"]

    assert "not a valid Arrow IPC stream" in error(b"not arrow at all")
    assert "not a valid Parquet file" in error(b"PAR1 nope", PARQUET)
    five = pa.table({f"x{i}": [1.0] for i in range(5)})
    assert "missing 'x5'" in error(encode_arrow(five))
    strings = pa.table({f"x{i}": ["1.0"] if i == 2 else [1.0] for i in range(6)})
    assert "row 0, input 'x2': expected a number" in error(encode_arrow(strings))
    empty = pa.table({f"x{i}": pa.array([], pa.float64()) for i in range(6)})
    assert "no rows" in error(encode_arrow(empty))
    frame_client = client_for(frame_model[2])
    unknown = pa.table({"size": [1.0], "count": [1], "site": ["z"]})
    assert "one of the levels 'a', 'b', 'c'" in error(
        encode_arrow(unknown), model_client=frame_client
    )


def test_without_pyarrow_arrow_bodies_are_415_and_arrow_answers_406(array_model, monkeypatch):
    model, X, served = array_model
    client = client_for(served)
    monkeypatch.setattr(arrowio, "_pyarrow", lambda: None)
    table = pa.table({f"x{i}": X[:2, i] for i in range(6)})
    for body, media in ((encode_arrow(table), ARROW), (parquet_bytes(table), PARQUET)):
        answer = client.post("/v1/predict", data=body, content_type=media)
        assert answer.status_code == 415
        assert answer.json["code"] == "unsupported_media_type"
        assert "pip install pyarrow" in answer.json["error"]
    answer = client.post(
        "/v1/predict", json={"instances": X[:2].tolist()}, headers={"Accept": ARROW}
    )
    assert answer.status_code == 406 and "pip install pyarrow" in answer.json["error"]
    # JSON still works
    answer = client.post("/v1/predict", json={"instances": X[:2].tolist()})
    assert answer.json == {"predictions": model.predict(X[:2]).tolist()}


def test_other_media_types_name_what_is_accepted(array_model):
    client = client_for(array_model[2])
    answer = client.post("/v1/predict", data="a,b", content_type="text/csv")
    assert answer.status_code == 415 and ARROW in answer.json["error"]
    # v2 stays JSON-only
    answer = client.post("/v2/models/arr/infer", data=b"x", content_type=ARROW)
    assert answer.status_code == 415
