"""``medcls-pseudo [k=4] [rounds=1] [pool=test|<folder>] [threshold=0.98] [labeller=fold|ensemble]
[tta=[hflip]] <medcls-train overrides>``: K-fold training with pseudo-labelling rounds.

Round 0 trains the K folds without pseudo-labels; each later round adds the previous round's
confident predictions on the unlabelled pool as training images (top probability >=
``threshold``, read on the scale of the models' ``loss.label_smoothing``: 0.98 with α=0.05 is
p >= 0.956). Prints (and writes to ``<study dir>/pseudo_rounds.md``) the AUC per round; see
:mod:`medcls.workflows.pseudo_label`.
"""

from __future__ import annotations

import sys

from medcls.config import CONFIG_DIR  # noqa: F401  (registers medcls' OmegaConf resolvers)


def main(argv: list[str] | None = None) -> int:
    from medcls.errors import DataError
    from medcls.utils.console import console
    from medcls.workflows.pseudo_label import parse_args, run_pseudo

    try:
        return run_pseudo(parse_args(sys.argv[1:] if argv is None else argv))
    except DataError as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
