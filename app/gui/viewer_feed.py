"""Feeds the viewer decoded objects: a cache keyed by (SOP Instance UID, frame), decoding on the
TaskRunner's read pool, and prefetch of the neighbours of what is shown.

The viewer asks :meth:`FrameFeed.request` for (image index, frame). A cached object comes back at
once; otherwise a decode starts on the read pool (one "current" slot: a newer request cancels a
queued older one) and :attr:`FrameFeed.ready` delivers it on the GUI thread if it is still the
one wanted. Results of an older series (a generation number) are dropped. Read errors are not
cached: a scratched disc may read on the next try.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from app.core.imaging.encapsulated import ExtractedDocument
from app.core.model import Instance, Medium, Series
from app.gui.tasks import TaskRunner
from app.gui.viewer_loader import DatasetCache, Loaded, load_object
from app.gui.viewer_overlay import ImageInfo

FRAME_CACHE_BYTES = 384 * 2**20
PREFETCH = (1, -1, 2, -2)  # neighbour offsets decoded ahead, in this order
Key = tuple[str, int]


@dataclass
class SeriesRef:
    """The series being shown: its medium, its instances in display order, record values."""

    medium: Medium
    series: Series
    instances: list[Instance]
    fallback: dict[str, str] = field(default_factory=dict)


def record_values(medium: Medium, series: Series) -> dict[str, str]:
    """The medium's record values for the overlay, used only where the file has none."""
    vals: dict[str, str | None] = {"series_number": series.series_number,
                                   "series_description": series.description,
                                   "modality": series.modality}
    for p in medium.patients:
        for st in p.studies:
            if any(s is series for s in st.series):
                vals.update(patient_name=p.patient_name, patient_id=p.patient_id,
                            birth_date=p.birth_date, study_date=st.study_date,
                            study_description=st.description)
    return {k: v for k, v in vals.items() if v}


class FrameFeed(QObject):
    """Cache, decode and prefetch for one viewer (see the module docstring).

    Signals
    -------
    ready(object)
        The :class:`Loaded` last requested, once decoded.
    """

    ready = Signal(object)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.cur: SeriesRef | None = None
        self.gen = 0
        self.cache: OrderedDict[Key, Loaded] = OrderedDict()
        self.cache_bytes = 0
        self.datasets = DatasetCache()
        self.in_flight: set[Key] = set()
        self.wanted: Key | None = None
        self.documents: list[ExtractedDocument] = []

    def reset(self, cur: SeriesRef | None) -> None:
        """A new series (or none): in-flight results of the old one will be dropped."""
        self.gen += 1
        self.cur = cur
        self.wanted = None
        self.in_flight.clear()
        self.datasets.clear()

    def key(self, index: int, frame: int) -> Key:
        assert self.cur is not None
        inst = self.cur.instances[index]
        return (inst.sop_instance_uid or inst.path or f"#{index}", frame)

    def request(self, index: int, frame: int) -> Loaded | None:
        """The object at (index, frame) if cached; else start decoding it and return None."""
        key = self.key(index, frame)
        self.wanted = key
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        self._start(index, frame, key, priority=10, slot="viewer-current")
        return None

    def prefetch(self, index: int, frame: int, frames: int) -> None:
        """Decode the next frames of a multi-frame instance and the neighbouring images."""
        if self.cur is None:
            return
        wanted: list[tuple[int, int]] = []
        if frames > 1:
            wanted += [(index, (frame + d) % frames) for d in (1, 2, 3)]
        wanted += [(index + d, 0) for d in PREFETCH if 0 <= index + d < len(self.cur.instances)]
        for n, (idx, fr) in enumerate(wanted):
            key = self.key(idx, fr)
            if key not in self.cache:
                self._start(idx, fr, key, priority=0, slot=f"viewer-prefetch{n}")

    def _start(self, index: int, frame: int, key: Key, priority: int, slot: str) -> None:
        assert self.cur is not None
        if key in self.in_flight:
            return
        self.in_flight.add(key)
        cur, gen = self.cur, self.gen
        task = self.runner.start(load_object, (cur.medium, cur.instances[index], frame,
                                               cur.fallback, self.datasets),
                                 with_progress=False, key=f"{slot}-{id(self)}",
                                 priority=priority, name="viewer-decode")
        task.finished.connect(lambda res, k=key, g=gen: self._loaded(k, g, res))
        task.failed.connect(lambda msg, k=key, g=gen: self._loaded(
            k, g, Loaded("error", ImageInfo(), text=msg)))
        task.cancelled.connect(lambda k=key: self.in_flight.discard(k))

    def _loaded(self, key: Key, gen: int, res: Loaded) -> None:
        self.in_flight.discard(key)
        if gen != self.gen:
            return
        if res.document is not None:
            self.documents.append(res.document)
        if res.kind != "error":  # a read error may be transient (a scratched disc): retry later
            self.cache[key] = res
            self.cache_bytes += res.nbytes
        while self.cache_bytes > FRAME_CACHE_BYTES and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= old.nbytes
        if key == self.wanted:
            self.ready.emit(res)

    def drop_all(self) -> None:
        """Forget everything and delete extracted documents (at shutdown)."""
        self.reset(None)
        self.cache.clear()
        self.cache_bytes = 0
        for doc in self.documents:
            try:
                doc.path.unlink(missing_ok=True)
            except OSError:
                pass  # still open in the system viewer (Windows): the OS cleans its temp folder
        self.documents.clear()
