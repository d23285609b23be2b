"""The analyzer: results people look at, read from study folders alone.

The runner writes a study folder; everything here reads one (``folder.py``)
and never the runner's memory, so a report can be rebuilt from a copy, while
a study runs, or after it was killed:

- ``write_report(DIR)``: ``report.md``, ``report.html`` (self-contained) and ``plots/``;
- ``LiveReport()``: ``run_study(on_saved=LiveReport())`` rewrites them as runs finish;
- ``compare_studies([DIR, ...])`` / ``write_comparison``: studies side by side;
- ``load_study(DIR)``: the result object for notebooks (``.table()``, ``.plot(kind)``).
"""

from gdlab.report.compare import compare_studies, write_comparison
from gdlab.report.result import StudyResult, load_study
from gdlab.report.tables import rich_tables
from gdlab.report.write import LiveReport, write_report

__all__ = ["LiveReport", "StudyResult", "compare_studies", "load_study", "rich_tables", "write_comparison",
           "write_report"]
