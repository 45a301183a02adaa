"""Target (b) of bench_predict.py: the same recommender as an MLflow pyfunc model.

MLflow "models from code": `mlflow.pyfunc.save_model(python_model=<this file>,
artifacts={"reco": <reco.npz>})` copies this file into the model directory, and
`mlflow models serve` runs it to get the model, so nothing is pickled. `load_context` reads the
same plain-data artifact with the service's own decoder; `predict` calls the same
`RecoModel.recommend`. Input: `{"dataframe_records": [{"user_id": "u0042", "k": 10}]}`.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from helius_reco.model.artifact import decode
from helius_reco.model.recommender import RecoModel
from mlflow.pyfunc import PythonModel, PythonModelContext


class RecoPyfunc(PythonModel):  # type: ignore[misc]  # mlflow ships no type information
    model: RecoModel

    def load_context(self, context: PythonModelContext) -> None:
        self.model = decode(Path(context.artifacts["reco"]).read_bytes())

    # no type hints here: MLflow would read them as an input schema
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        out = []
        for user, k in zip(model_input["user_id"], model_input["k"], strict=True):
            reco = self.model.recommend(str(user), int(k))
            out.append(
                {
                    "user_id": str(user),
                    "items": [{"item_id": i, "score": s} for i, s in reco.items],
                    "known_user": reco.known_user,
                }
            )
        return out


mlflow.models.set_model(RecoPyfunc())
