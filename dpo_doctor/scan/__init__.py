"""The scan pipeline: config, the pair-scoring and generation-probe stages, the long table.

This package is also the API's `scan` function: `dpo_doctor.scan(config, progress=None)` runs
`dpo_doctor.scan.pipeline.scan` (check the config, score, diagnose, write report.json and its tables) and returns
the report folder. The package itself is callable so that `dpo_doctor.scan` means the same thing whichever of
`dpo_doctor.scan.*` was imported first (a sub-package and a function cannot otherwise share the name).
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, config, progress=None):
        """Run a scan (see `dpo_doctor.scan.pipeline.scan`); returns the report folder (a Path)."""
        from dpo_doctor.scan.pipeline import scan

        return scan(config, progress)


sys.modules[__name__].__class__ = _CallablePackage
