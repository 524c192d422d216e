"""Foundation backbones by timm name + a downloaded file (``model.weights=<name>:<file>``):
DINOv2's original layout, RETFound-Green's timm layout and BiomedCLIP's open_clip layout load
into timm's ViTs with their position embeddings resampled to the training size, the licence and
normalisation recorded; a file without its name, another architecture and a missing download are
handled. Mechanics only: small randomly initialised ViTs saved to files stand in for the real
weights, which cannot be fetched here (and no test reaches a hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

from medcls.errors import WeightsError, WeightsNotFound
from medcls.models.backbone import create_backbone
from medcls.models.weights_sources import DOWNLOADABLE, weights_provenance


def saved(tmp_path: Path, name: str, state: dict[str, torch.Tensor]) -> str:
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return str(path)


SMALL = {"depth": 2}  # two blocks: the key layout of the real network, a fraction of its time


def random_state(arch: str, **kwargs) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=0, **SMALL, **kwargs).state_dict()


def test_retfound_green_layout_loads_resampled_with_its_licence(tmp_path: Path) -> None:
    arch = DOWNLOADABLE["retfound_green"].architecture  # vit_small_patch14_reg4_dinov2 at 392 px
    state = random_state(arch, img_size=392)
    path = saved(tmp_path, "retfoundgreen_statedict", state)
    net = create_backbone(arch, weights=f"retfound_green:{path}", img_size=98, **SMALL)
    got = net.state_dict()
    assert torch.equal(got["blocks.1.mlp.fc1.weight"], state["blocks.1.mlp.fc1.weight"])
    assert torch.equal(got["reg_token"], state["reg_token"])
    # 28×28 patches at 392 px → 7×7 at 98 px, as timm resamples (registers carry no position)
    expected = resample_abs_pos_embed(state["pos_embed"], (7, 7), (28, 28), num_prefix_tokens=0)
    assert got["pos_embed"].shape == (1, 49, 384) and torch.allclose(got["pos_embed"], expected)
    assert tuple(net.pretrained_cfg["mean"]) == (0.5,) * 3  # data.normalize=backbone reads it
    prov = weights_provenance(net)
    assert prov["source"] == f"retfound_green:{path}" and "non-commercial" in prov["licence"]
    assert prov["architecture"] == arch and len(prov["sha256"]) == 16
    assert net(torch.randn(2, 3, 98, 98)).shape == (2, 384)


def test_dinov2_original_layout_is_converted(tmp_path: Path) -> None:
    # Meta's dinov2_vits14_pretrain.pth: timm's names plus the masked-modelling token, which
    # timm's conversion drops; loaded without it, the strict key check would refuse the file.
    arch = DOWNLOADABLE["dinov2_small"].architecture
    state = random_state(arch) | {"mask_token": torch.zeros(1, 384)}
    path = saved(tmp_path, "dinov2_vits14_pretrain", state)
    net = create_backbone(arch, weights=f"dinov2_small:{path}", img_size=112, **SMALL)
    assert torch.equal(
        net.state_dict()["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"]
    )
    assert net.state_dict()["pos_embed"].shape == (1, 1 + 8 * 8, 384)
    assert tuple(net.pretrained_cfg["std"]) == (0.229, 0.224, 0.225)


def test_open_clip_layout_keeps_the_vision_tower_only(tmp_path: Path) -> None:
    # BiomedCLIP's open_clip_pytorch_model.bin: the timm trunk under visual.trunk., a projection,
    # and a text tower; a plain file (no name) loads too, without a licence on record.
    arch = "vit_tiny_patch16_224"
    trunk = random_state(arch)
    state = {f"visual.trunk.{k}": v for k, v in trunk.items()}
    state |= {"visual.head.proj.weight": torch.randn(512, 192), "logit_scale": torch.ones(())}
    state |= {"text.transformer.embeddings.word_embeddings.weight": torch.randn(10, 8)}
    path = saved(tmp_path, "open_clip_pytorch_model", state)
    net = create_backbone(arch, weights=path, img_size=64, **SMALL)
    assert torch.equal(net.state_dict()["blocks.1.norm1.weight"], trunk["blocks.1.norm1.weight"])
    assert weights_provenance(net)["licence"] is None
    # the named form checks the architecture: BiomedCLIP's tower is a ViT-B/16
    with pytest.raises(WeightsError, match="vit_base_patch16_224.*vit_tiny_patch16_224"):
        create_backbone(arch, weights=f"biomedclip:{path}", img_size=64, **SMALL)


@pytest.mark.parametrize("setting", ["retfound_green", "retfound_green:/nowhere/rfg.pth"])
def test_a_missing_download_says_where_to_get_it(setting: str) -> None:
    with pytest.raises(WeightsNotFound) as e:
        create_backbone("vit_small_patch14_reg4_dinov2", weights=setting, img_size=98)
    message = str(e.value)
    assert DOWNLOADABLE["retfound_green"].url in message and "non-commercial" in message
    assert "model.weights=retfound_green:/path/to/the/file" in message
