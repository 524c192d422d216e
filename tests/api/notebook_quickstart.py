"""A notebook's worth of medcls through the Python API alone: train on a folder of images,
load the model (from its checkpoint and from MLflow), predict, evaluate, report.

Run it in an empty folder: ``python notebook_quickstart.py``. Its last line is a JSON summary
(tests/api/test_api.py checks it against the run's own files).
"""

# %% a small image folder, one sub-folder per class, as a user would have
import json
import os

import numpy as np
import pandas as pd
from PIL import Image

import medcls

rng = np.random.default_rng(0)
for name, colour in {"benign": (60, 160, 60), "malignant": (160, 60, 60)}.items():
    os.makedirs(f"images/{name}", exist_ok=True)
    for i in range(24):
        pixels = np.clip(rng.normal(colour, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(f"images/{name}/{name}_{i:02d}.png")

# %% train (the same configs and overrides as medcls-train)
settings = [
    "data=imagefolder",
    f"data.root={os.path.abspath('images')}",
    "model.name=test_efficientnet",
    "data.image_size=32",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.precision=32-true",
    "eval.curves=false",
    "print_config=false",
    "experiment_name=notebook",
]
run = medcls.train(overrides=settings)
print(run.metrics["test/balanced_accuracy"], run.checkpoint, run.run_id)

# %% load and predict: a checkpoint, or the MLflow Model the run logged
model = medcls.load(run.checkpoint)
served = medcls.load(f"runs:/{run.run_id}/model")
tested = os.path.join(run.output_dir, "test_predictions.csv")
paths = pd.read_csv(tested)["path"].tolist()  # the run's test images
probs = model.predict(paths)  # (N, K), columns in model.class_names order
probs_mlflow = served.predict(paths)

# %% evaluate the checkpoint again, and the experiment's report table
again = medcls.evaluate(
    overrides=[f"ckpt_path={run.checkpoint}", *settings[:2], "trainer.precision=32-true"]
)
table = medcls.report(overrides=["experiment_name=notebook", "bootstrap=0"])

print(
    json.dumps(
        {
            "class_names": model.class_names,
            "paths": paths,
            "probs": probs.tolist(),
            "probs_mlflow": probs_mlflow.tolist(),
            "test_predictions": tested,
            "train_metrics": run.metrics,
            "eval_metrics": again.metrics,
            "report": table.to_dict(orient="records"),
        }
    )
)
