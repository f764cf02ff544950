"""Measuring one stage: wall time, peak resident memory, and running a stage in its own process.

Peak RSS method (Linux): every stage runs in a fresh Python process (as a Dagster step would),
and its peak is ``VmHWM`` from ``/proc/self/status``, imports included. Not ``ru_maxrss``:
Linux carries ``ru_maxrss`` across ``fork`` + ``exec``, so a child of a large parent reports
the parent's peak (our first 1M run showed 1,333 MiB, the generator's peak, for every stage).
``VmHWM`` belongs to the process's own address space, which ``exec`` replaces. The runner
also generates the warehouse in a child process, so the parent stays small. Inside the sync
process, which does the diff and then the send, the diff's peak is
read from ``VmHWM`` in ``/proc/self/status`` at the first destination call, then the high-water
mark is reset by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), so the send's peak
is ``VmHWM`` at the end. After a reset the mark starts from the RSS of that moment, which
includes memory the diff left allocated: the send's peak is an upper bound.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_REPO_ROOT = Path(__file__).resolve().parents[1]
KIB_PER_MIB = 1024


class StageError(RuntimeError):
    """A stage process failed; the message holds the tail of its stderr."""


def ru_maxrss_mib() -> float:
    """Peak RSS of this process so far (MiB), from ``getrusage`` (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def cpu_s() -> float:
    """CPU seconds (user + system, every thread) this process used so far. Less sensitive than
    wall time to other processes competing for the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_field(name: str) -> float | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) / KIB_PER_MIB if match else None


def peak_rss_mib() -> float:
    """This process's peak RSS (MiB): ``VmHWM`` where ``/proc`` has it, else ``ru_maxrss``."""
    hwm = vm_hwm_mib()
    return ru_maxrss_mib() if hwm is None else hwm


def vm_hwm_mib() -> float | None:
    """Peak RSS since the process started or since the last :func:`reset_peak` (MiB), or
    None where ``/proc`` is not available."""
    return _status_field("VmHWM")


def vm_rss_mib() -> float | None:
    """Current RSS (MiB), or None without ``/proc``."""
    return _status_field("VmRSS")


def reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS; False when the kernel refuses."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def rate(rows: int, seconds: float) -> float:
    """Rows per second (0 when no time was measured)."""
    return rows / seconds if seconds > 0 else 0.0


def run_stage(kind: str, job: dict[str, Any], jobs_dir: Path, name: str) -> dict[str, Any]:
    """Run ``python -m bench stage <kind>`` in a fresh process and return its result.

    ``job``: JSON-able arguments of the stage. The job and result files are kept in
    ``jobs_dir`` as ``<name>.job.json`` / ``<name>.result.json`` (stderr in ``<name>.log``).

    Raises:
        StageError: the process exited non-zero (the message ends with its stderr tail).
    """
    jobs_dir.mkdir(parents=True, exist_ok=True)
    job_file = jobs_dir / f"{name}.job.json"
    result_file = jobs_dir / f"{name}.result.json"
    log_file = jobs_dir / f"{name}.log"
    job_file.write_text(json.dumps(job, indent=2))
    cmd = [sys.executable, "-m", "bench", "stage", kind, str(job_file), str(result_file)]
    with log_file.open("wb") as log:
        done = subprocess.run(cmd, cwd=_REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise StageError(f"stage {name} ({kind}) exited {done.returncode}:\n{tail}")
    return json.loads(result_file.read_text())


__all__ = [
    "StageError",
    "cpu_s",
    "peak_rss_mib",
    "rate",
    "reset_peak",
    "ru_maxrss_mib",
    "run_stage",
    "vm_hwm_mib",
    "vm_rss_mib",
]
