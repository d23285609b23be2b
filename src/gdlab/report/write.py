"""Writing a study's report files into its folder: once (``gdlab report DIR``), or as runs finish.

Every file is replaced atomically, so a browser watching ``report.html`` while
the study runs never reads half of one.
"""

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from gdlab.errors import GdlabError
from gdlab.report.build import study_document
from gdlab.report.document import Document, to_html, to_markdown
from gdlab.report.folder import StudyRecords, read_study


def write_document(document: Document, out_dir: Path, stem: str) -> Path:
    """``stem.md`` and ``stem.html`` with the document's images under ``plots/``; PNGs there that the
    document no longer has are removed (plots/ holds the report's figures, nothing else)."""
    from gdlab.study.records import write_atomically

    plots_dir = out_dir / "plots"
    images = document.images()
    for image in images:
        write_atomically(plots_dir / image.file, image.png)
    current = {image.file for image in images}
    if plots_dir.is_dir() and stem == "report":
        for stale in plots_dir.glob("*.png"):
            if stale.name not in current:
                stale.unlink(missing_ok=True)
    write_atomically(out_dir / f"{stem}.md", to_markdown(document).encode())
    write_atomically(out_dir / f"{stem}.html", to_html(document).encode())
    return out_dir / f"{stem}.md"


def write_report(folder: str | Path | StudyRecords) -> Path:
    """Rebuild ``report.md``, ``report.html`` and ``plots/`` from the study folder alone (finished,
    running or interrupted); returns the path of ``report.md``."""
    records = folder if isinstance(folder, StudyRecords) else read_study(folder)
    return write_document(study_document(records), records.root, "report")


class LiveReport:
    """``run_study(on_saved=LiveReport())``: the report rewritten as runs finish, and at the end.

    Rebuilding draws every figure again, so it is spaced out: at least
    ``min_interval`` seconds apart, and taking at most ``max_share`` of the
    study's time (``max_share=1`` and ``min_interval=0``: after every job). A
    failure while the study runs is printed, not raised: the runs matter more
    than their report, which ``gdlab report DIR`` can rebuild.
    """

    def __init__(self, console: Console | None = None, min_interval: float = 10.0, max_share: float = 0.2):
        if not 0 < max_share <= 1:
            raise GdlabError(f"LiveReport: max_share = {max_share!r} must be in (0, 1]: the most of the study's "
                             f"time its report may take (1: after every job)")
        self.console = console or Console()
        self.min_interval = min_interval
        self.max_share = max_share
        self.started = time.monotonic()
        self.last_built: float | None = None
        self.last_cost = 0.0
        self.failed = False

    def __call__(self, folder: Path, finished: bool) -> None:
        now = time.monotonic()
        since = now - (self.last_built if self.last_built is not None else self.started)
        # Waiting cost * (1/share - 1) between rebuilds keeps them to ``max_share`` of the time.
        if not finished and since < max(self.min_interval, self.last_cost * (1 / self.max_share - 1)):
            return
        try:
            write_report(folder)
        except Exception as error:
            if finished:
                raise
            if not self.failed:
                self.console.print(f"[yellow]report not rebuilt ({escape(str(error))}); "
                                   f"the study goes on; gdlab report {escape(str(folder))} rebuilds it[/yellow]")
            self.failed = True
        self.last_built = time.monotonic()
        self.last_cost = self.last_built - now
