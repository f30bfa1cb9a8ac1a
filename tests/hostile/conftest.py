"""Hostile-input helpers: run the installed console script and check it fails the way a user should see.

`run_cli(*args)` runs `dpo-doctor` from the venv in a subprocess (offline); `assert_user_error(proc, *needles)`
checks exit code 2, no traceback, one short paragraph on stderr containing each needle (case-insensitive).
"""

import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "dpo-doctor"


def run_cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run `dpo-doctor *args` offline; returns the CompletedProcess (text stdout/stderr)."""
    full_env = dict(os.environ)
    full_env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    full_env.update(env or {})
    return subprocess.run([str(CLI), *map(str, args)], env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, no traceback, stderr one paragraph (no blank line, <= 6 lines) containing every needle."""
    err = proc.stderr.strip()
    detail = f"\nrc={proc.returncode}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout[-2000:]}"
    assert proc.returncode == 2, "expected exit code 2" + detail
    assert "Traceback" not in proc.stderr, "traceback on a user error" + detail
    assert err, "empty stderr" + detail
    lines = err.splitlines()
    assert all(line.strip() for line in lines), "stderr is more than one paragraph" + detail
    assert len(lines) <= 6, f"stderr has {len(lines)} lines (at most 6)" + detail
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in stderr" + detail
