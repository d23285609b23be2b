"""``compare``: per-tensor errors, verdicts and diagnosis gathered in a ``GradReport``."""

import io
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from gdlab.gradcheck.comparison import TensorComparison, as_named_tensors, compare_tensor, resolve_tolerances
from gdlab.gradcheck.diagnosis import Finding, diagnose


@dataclass(frozen=True)
class GradReport:
    """How analytic gradients compare with a reference, tensor by tensor.

    ``gradients_ok`` is True when every tensor passes (and, when present, so
    does the ``finite_differences`` report that ``check_mlp_backward``
    attaches). ``check_mlp_backward`` adds two things a tensor table cannot
    show: ``reduction``, a finding set when the gradients are those of the
    loss given with another reduction (summed where it averages, or the
    reverse); the tables then compare with that loss, and ``reduction.factor``
    says how it relates to the loss given. And ``side_effects``: findings
    about what the backward pass changed that it should only read (the
    parameters, their .grad, y_pred, y_true).

    ``ok`` is True only for the gradients of the loss given, with no side
    effect. ``verdict``: "ok"; "mismatch" (a gradient is wrong);
    "other_reduction" (right for the loss with the other reduction, nothing
    else wrong); "changes_model" (the gradients are right, possibly for the
    other reduction, but the backward pass changes what it should only read).
    ``kind``: "none" for ok, "variant" for other_reduction, "bug" otherwise.
    """

    comparisons: list[TensorComparison]
    findings: list[Finding]
    reference_name: str
    rtol: float
    atol: float
    finite_differences: "GradReport | None" = None
    notes: tuple[str, ...] = ()  # facts about the reference a reader needs, printed under its table
    reduction: Finding | None = None
    side_effects: tuple[Finding, ...] = ()

    @property
    def gradients_ok(self) -> bool:
        own = all(comparison.ok for comparison in self.comparisons)
        return own and (self.finite_differences is None or self.finite_differences.gradients_ok)

    @property
    def ok(self) -> bool:
        return self.gradients_ok and self.reduction is None and not self.side_effects

    @property
    def verdict(self) -> str:
        if not self.gradients_ok:
            return "mismatch"
        if self.side_effects:
            return "changes_model"
        if self.reduction is not None:
            return "other_reduction"
        return "ok"

    @property
    def kind(self) -> str:
        return {"ok": "none", "other_reduction": "variant"}.get(self.verdict, "bug")

    def render(self, width: int = 110) -> str:
        """The comparison as plain text: the loss, one table per reference, the diagnosis, the verdict."""
        console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
        if self.reduction is not None:
            console.print(f"Loss: {self.reduction.message}", markup=False)
        for report in [self] + ([self.finite_differences] if self.finite_differences else []):
            console.print(report._table())
            for note in report.notes:
                console.print(f"Note: {note}", markup=False)
        findings = self._findings_to_show() + list(self.side_effects)
        if findings:
            console.print("Diagnosis:")
            for finding in findings:
                console.print(f"- [{finding.kind}] {finding.message}", markup=False)
        console.print(f"Verdict: {self._verdict_line()}", markup=False)
        # rich pads lines to the console width; the padding is noise in a file or a diff.
        return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"

    def __str__(self) -> str:
        return self.render()

    def _verdict_line(self) -> str:
        verdict = self.verdict
        if verdict == "other_reduction":
            return f"OTHER REDUCTION: right for {self.reduction.summary}, not for the loss given"
        if verdict == "changes_model":
            what = "right" if self.reduction is None else f"right for {self.reduction.summary}"
            return f"CHANGES THE MODEL: the gradients are {what}, but backward changes what it should only read"
        return verdict.upper()

    def _table(self) -> Table:
        summaries = {finding.tensor: finding.summary for finding in self.findings if finding.tensor}
        table = Table(
            title=f"analytic vs {self.reference_name} (rtol={self.rtol:g}, atol={self.atol:g})",
            title_justify="left",
        )
        for column in ("tensor", "shape", "max abs error", "max rel error", "verdict", "diagnosis"):
            table.add_column(column, justify="right" if "error" in column else "left")
        for comparison in self.comparisons:
            shape = "x".join(map(str, comparison.shape)) or "scalar"
            if comparison.shape != comparison.reference_shape:
                shape += f" (needs {'x'.join(map(str, comparison.reference_shape))})"
            table.add_row(
                comparison.name,
                shape,
                f"{comparison.max_abs_error:.2e}",
                f"{comparison.max_rel_error:.2e}",
                "ok" if comparison.ok else "MISMATCH",
                summaries.get(comparison.name, ""),
            )
        return table

    def _findings_to_show(self) -> list[Finding]:
        """The findings worth reading in full.

        A finding about several tensors comes first and replaces the per-tensor
        ones it explains: all of them for a common factor, the "no simple
        pattern" ones otherwise (the table already shows their errors).
        """
        findings = self.findings
        if self.finite_differences is not None and not findings:
            findings = self.finite_differences.findings
        across = [f for f in findings if f.tensor is None]
        if not across:
            return findings
        if any(f.layer is None and f.factor is not None for f in across):
            return across
        said = {f.kind for f in across}
        return across + [
            f for f in findings
            if f.tensor is not None and f.kind not in {"no_pattern", "follows"} and f.kind not in said
        ]


def compare(
    analytic,
    reference,
    names=None,
    rtol: float | None = None,
    atol: float | None = None,
    batch_size: int | None = None,
    output_size: int | None = None,
    reference_name: str = "reference",
    averaged=("batch", "outputs"),
    loss_hint: str | None = None,
) -> GradReport:
    """Compare analytic gradients with reference ones (finite differences or autograd).

    ``analytic`` and ``reference`` are lists of tensors, or of ``(dL_dW, dL_db)``
    pairs, in the same order. An element passes when
    |a - r| <= atol + rtol·|r|; defaults are rtol=1e-5, atol=1e-8 when every
    tensor is float64, else rtol=1e-3, atol=1e-5. ``batch_size``,
    ``output_size``, ``averaged`` and ``loss_hint`` help ``diagnose`` name a
    constant factor and the loss gradient.
    """
    analytic, reference, names = as_named_tensors(analytic, reference, names, "compare")
    rtol, atol = resolve_tolerances(analytic, reference, rtol, atol)
    comparisons = [compare_tensor(name, a, r, rtol, atol) for name, a, r in zip(names, analytic, reference)]
    findings = diagnose(analytic, reference, names, batch_size, output_size, rtol, atol, averaged, loss_hint)
    return GradReport(comparisons, findings, reference_name, rtol, atol)
