"""Run folders: JSON-lines rows and orbax checkpoints of a training state (used by
:mod:`jaxgap.train` and :mod:`jaxgap.ensemble`, which re-export these names)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import nnx

__all__ = ["CHECKPOINTS", "append_jsonl", "checkpoint_manager", "pure_state", "read_jsonl",
           "restore_state"]

CHECKPOINTS = "checkpoints"


def append_jsonl(path, rows) -> None:
    """Append JSON rows to a file, flushed and synced (a kill may tear the last line only)."""
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path, upto: int | None = None) -> list[dict]:
    """Rows of a JSON-lines file with a ``step`` field, up to step ``upto`` (a torn last line
    from a kill is dropped)."""
    path = Path(path)
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if upto is None or row["step"] <= upto:
                rows.append(row)
    return rows


def checkpoint_manager(workdir, *, only_this_process: bool = False) -> ocp.CheckpointManager:
    """The orbax manager of ``workdir/checkpoints`` (synchronous, the last two kept).

    ``only_this_process``: in a multi-process run, the one process that writes (its state
    gathered to host memory), so no other process and no shared filesystem take part."""
    path = (Path(workdir) / CHECKPOINTS).absolute()
    mp = {}
    if only_this_process and jax.process_count() > 1:
        me = jax.process_index()
        mp["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
            primary_host=me, active_processes={me})
        path.mkdir(parents=True, exist_ok=True)  # orbax creates it only with all processes
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=not mp,
                                           enable_async_checkpointing=False, **mp)
    return ocp.CheckpointManager(path, options=options)


def pure_state(state: dict) -> dict:
    """The training state with its nnx parameter states as plain dicts (what orbax saves)."""
    out = dict(state)
    out["params"] = nnx.to_pure_dict(state["params"])
    out["ema"] = nnx.to_pure_dict(state["ema"])
    return out


def restore_state(manager, template: dict, step: int) -> dict:
    """Restore checkpoint ``step`` into the structure of ``template``."""
    pure = pure_state(template)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, pure)
    try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as err:  # orbax raises many types for unreadable files
        raise ValueError(f"checkpoint: cannot restore step {step} from "
                         f"{manager.directory}: {type(err).__name__}: {err}") from err
    out = dict(restored)
    for name in ("params", "ema"):
        st = jax.tree.map(lambda x: x, template[name])
        nnx.replace_by_pure_dict(st, restored[name])
        out[name] = st
    return out
