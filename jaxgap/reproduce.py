"""Kept for one release (0.2): the study moved to :mod:`jaxgap.study`.

The README of 0.1 showed ``jaxgap.reproduce`` with ``default_config``, ``run`` and
``evaluate_claims``; they are re-exported here unchanged. ``ReproduceConfig`` is now
:class:`jaxgap.study.StudyConfig`, which holds a :class:`~jaxgap.train.TrainConfig` instead
of copying its fields.
"""

from jaxgap.study import StudyConfig as ReproduceConfig
from jaxgap.study import default_config, evaluate_claims, run

__all__ = ["ReproduceConfig", "default_config", "evaluate_claims", "run"]
