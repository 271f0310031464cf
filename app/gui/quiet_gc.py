"""Full garbage collections kept away from the GUI thread while big object trees are built."""

from __future__ import annotations


class QuietGC:
    """Keep full (generation 2) garbage collections away while big object trees are built.

    A full collection runs in whichever thread allocates and holds the GIL throughout: while the
    reader built a 20,000-record medium they stopped the event loop for 70–190 ms at a time
    (benchmarks/bench_gui.py). While any :meth:`hold` is active the generation-2 threshold is
    lifted (young collections go on); at the last :meth:`release` the new objects are moved to
    the permanent generation (``gc.freeze()``), so later full collections never walk them.
    Objects that become garbage keep being freed by reference counting; models break their own
    reference cycles when a medium is closed.
    """

    _holds = 0
    _saved: tuple[int, int, int] | None = None

    @classmethod
    def hold(cls) -> None:
        import gc

        if cls._holds == 0:
            cls._saved = gc.get_threshold()
            gc.set_threshold(cls._saved[0], cls._saved[1], 1_000_000)
        cls._holds += 1

    @classmethod
    def release(cls) -> None:
        import gc

        if cls._holds == 0:
            return
        cls._holds -= 1
        if cls._holds == 0 and cls._saved is not None:
            gc.set_threshold(*cls._saved)
            gc.freeze()

    @staticmethod
    def settle() -> None:
        """Freeze what exists now (call once the application has started)."""
        import gc

        gc.freeze()
