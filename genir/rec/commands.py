"""Plain functions behind the CLI's recommendation commands (genir.cli wires the options to them).

    genir index DATA --task recommend --out DIR [--workdir W --resume] -> index(DATA, out=DIR, checkpoint_dir=W, resume=...)
    genir index DATA --task recommend --out DIR --reuse OLD --mode sasrec   -> index(..., reuse=OLD, modes=["sasrec"])
    genir recommend DIR --user U | --history A,B -k 10 [--mode hybrid]
                                                       -> recommend(DIR, user=U | history=[A, B], k=10, mode=...)
    genir eval DIR --data DATA --split test --mode generative --mode hybrid --mode sasrec --out REPORT.json
                                                       -> evaluate(DIR, data=DATA, split="test", modes=[...], out=...)
    each of them with --device auto|cpu|cuda|cuda:N    -> device=... (where the models train or serve)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from genir.config import RecConfig
from genir.rec.recommender import MODES, Recommender

logger = logging.getLogger(__name__)


def index(data: str | Path, *, out: str | Path, config: RecConfig | None = None, modes: Sequence[str] = MODES,
          checkpoint_dir: str | Path | None = None, resume: bool | str = False, progress: bool | None = None,
          device: str = "auto", reuse: str | Path | None = None) -> dict:
    """Build a recommendation index from an Amazon-format folder (see genir.data.amazon) and save it.

    Training checkpoints (one per epoch) go to ``checkpoint_dir`` (default ``OUT.work``, as for retrieval);
    ``resume=True`` continues an interrupted build from them, and ends as an uninterrupted one would. ``reuse``
    (an index built from the same folder): train only ``modes``, on its item IDs, and copy its other modes
    (genir.rec.reuse). -> summary dict (counts, modes, training reports, the stages reused).
    """
    from genir.data.amazon import load_sequences

    data, out = Path(data), Path(out)
    sequences = load_sequences(data)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else out.with_name(out.name + ".work")
    rec = Recommender.build(sequences, config or RecConfig(), modes=modes, dataset=data.name, checkpoint_dir=ckpt,
                            resume=resume, progress=progress, device=device,
                            reuse=Path(reuse) if reuse is not None else None)
    version = rec.save(out)
    return {"index": str(out), "version": version.name, "dataset": data.name, "users": rec.data.num_users,
            "items": rec.data.num_items, "modes": list(rec.modes), "reports": rec.reports,
            "reused": (rec.reused or {}).get("stages", [])}


def recommend(index_dir: str | Path, *, user: str | None = None, history: Sequence[str] | None = None, k: int = 10,
              mode: str = "generative", device: str = "auto") -> list[dict]:
    """Top-k next items: [{"rank", "item_id", "text", "score"}] for a known user or an item history."""
    return Recommender.load(Path(index_dir), device=device).recommend(user=user, history=history, k=k, mode=mode)


def evaluate(index_dir: str | Path, *, data: str | Path, split: str = "test", modes: Sequence[str] = MODES,
             out: str | Path | None = None, device: str = "auto") -> dict:
    """Leave-one-out evaluation of the index on ``data``'s ``split`` ("valid" | "test") -> REPORT dict
    (written as JSON to ``out`` when given)."""
    from genir.data.amazon import load_sequences

    rec = Recommender.load(Path(index_dir), device=device)
    report = rec.evaluate(split, modes=modes, sequences=load_sequences(Path(data)))
    if out is not None:
        from genir.provenance import write_result

        write_result(Path(out), report)  # with the command line, commit, versions and machine that produced it
    return report
