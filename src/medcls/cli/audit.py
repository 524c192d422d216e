"""``medcls-audit data=... [data.root=...]``: list unreadable images, exact duplicates (same
decoded pixels), duplicates with different labels and images in two partitions; write a CSV
that ``data.exclude=<csv>`` takes back.

Exit code: 0 no findings, 1 findings (report written; ``fail_on_issues=false`` gives 0),
2 bad input (missing folder, …).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="audit")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.audit import run_audit

    result = run_guarded(run_audit, cfg)
    if not result.clean and cfg.fail_on_issues:
        sys.exit(1)


if __name__ == "__main__":
    main()
