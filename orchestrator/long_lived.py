"""Build objects that live as long as the process without the cyclic garbage collector walking
them again and again.

Python's cyclic collector walks every tracked object of its oldest generation each time that
generation has grown by a quarter. The definitions of 500 segment files are about 425,000 such
objects (parsed segments, assets, ops, specs) and Dagster's resolution of the 500 segment jobs
adds as many again, all kept until the process ends (Dagster caches each resolved job): about
a third of the CPU time of ``dagster definitions validate`` went to the collector walking them
(``bench/README.md``, "Loading 500 segment files").

:func:`built_to_live` pauses the collector while a block builds such objects, then moves every
object alive at that point to the permanent generation (``gc.freeze``), which later passes
skip. Reference counting frees objects as usual meanwhile. What it costs: a reference cycle
that becomes garbage after the freeze (or was garbage at it) is never collected. The
definitions build and a job's resolution leave next to none (6 objects at 500 segment files,
measured with ``gc.collect()`` right after the build), and a production process loads its
definitions once (``dagster dev`` reloads a code location in a new process); a process that
loads them again and again (a test session) keeps about 1 MB per load of the example project.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def built_to_live() -> Iterator[None]:
    """Run the block with the cyclic collector paused; when it returns normally, freeze every
    object alive (``gc.freeze``) so that the collector never walks them again.

    The collector is enabled again on exit whether the block returned or raised (and left
    disabled if it was disabled on entry); nothing is frozen when the block raises.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.collect(0)  # the block's own garbage cycles (all its objects are young): not frozen
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
