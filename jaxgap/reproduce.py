"""Kept for one release (0.2): the study moved to :mod:`jaxgap.study`.

The README of 0.1 showed ``jaxgap.reproduce`` with ``default_config``, ``run`` and
``evaluate_claims``; the first two are re-exported here (``evaluate_claims`` judged one seed
against criteria that could not fail and was replaced by
:func:`jaxgap.study.judge_run`). ``ReproduceConfig`` is now
:class:`jaxgap.study.StudyConfig`, which holds a :class:`~jaxgap.train.TrainConfig` instead
of copying its fields.
"""

from jaxgap.study import StudyConfig as ReproduceConfig
from jaxgap.study import default_config, judge_run, run

__all__ = ["ReproduceConfig", "default_config", "judge_run", "run"]
