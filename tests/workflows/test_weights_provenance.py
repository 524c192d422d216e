"""A run from local weights (model.weights= a Hugging Face cache folder) records where they came
from: source, licence and digest in the checkpoint and as MLflow tags; data.normalize=backbone
takes the weights' own mean/std; the checkpoint evaluates without the weights."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from medcls.tasks.checkpoint import load_task, read_checkpoint
from medcls.workflows.train import run_train

MEAN, STD = [0.25, 0.5, 0.75], [0.2, 0.3, 0.4]  # not timm's: only the folder's config says them


def hf_folder(root: Path) -> Path:
    """timm's hf-hub layout for test_efficientnet (with its 1000-class classifier)."""
    torch.manual_seed(0)
    state = timm.create_model("test_efficientnet").state_dict()
    root.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "model.safetensors"))
    config = {
        "architecture": "test_efficientnet",
        "pretrained_cfg": {"mean": MEAN, "std": STD, "license": "apache-2.0"},
    }
    (root / "config.json").write_text(json.dumps(config))
    return root / "model.safetensors"


def test_checkpoint_and_mlflow_carry_the_weights_provenance(
    tmp_path: Path, helpers, mlflow_uri: str
) -> None:
    weights = hf_folder(tmp_path / "weights")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                f"model.weights={weights.parent}",
                "trainer.max_epochs=1",
                *helpers.mlflow_overrides(mlflow_uri, "weights-provenance"),
            )
        )
        run_train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    meta = read_checkpoint(str(best))["medcls"]
    assert meta["weights"] == {
        "source": str(weights),
        "kind": "hf",
        "licence": "apache-2.0",
        "sha256": digest,
        "digest_of": "file",
        "architecture": "test_efficientnet",
    }
    assert meta["mean"] == MEAN and meta["std"] == STD  # data.normalize=backbone
    client = MlflowClient(tracking_uri=mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("weights-provenance").experiment_id])
    tags = run.data.tags
    assert (tags["weights.source"], tags["weights.licence"], tags["weights.sha256"]) == (
        str(weights),
        "apache-2.0",
        digest,
    )
    # evaluation rebuilds the network from the checkpoint alone: the weights may be gone
    shutil.rmtree(weights.parent)
    task, again = load_task(str(best))
    assert again["model"]["weights"] == str(weights.parent)
    assert (task.mean.flatten() / 255).tolist() == pytest.approx(MEAN)  # task input: 0..255
