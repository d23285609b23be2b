"""``compare``: per-tensor errors, verdicts and diagnosis gathered in a ``GradReport``.

``GradReport.comparison`` states the result in the words every gdlab comparison shares
(`gdlab.comparison`: verdict pass | fail, kind, cause, evidence, the tolerance in words and as
a number, the largest error measured), and ``to_json()`` starts from them.
"""

import io
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from gdlab.comparison import Comparison, Tolerance, Verdict, finite_or_none
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

    @property
    def tolerance(self) -> Tolerance:
        """``rtol`` and ``atol`` as one criterion: the largest relative error a tensor may have
        (`gdlab.gradcheck.comparison` defines the error so that this is exactly torch.allclose)."""
        return Tolerance(
            f"every element |a - r| <= atol + rtol |r| (rtol={self.rtol:g}, atol={self.atol:g}, as "
            f"torch.allclose), i.e. relative error |a - r| / (|r| + atol/rtol) <= {self.rtol:g}",
            self.rtol,
        )

    @property
    def comparison(self) -> Comparison:
        """The verdict in the shared words: pass only when ``ok``; ``kind`` as above; ``cause``
        what is wrong (the first finding worth reading, the other reduction, or what backward
        changes); ``evidence`` the tensors beyond the tolerance, or that every one is within it."""
        reports = [self] + ([self.finite_differences] if self.finite_differences else [])
        return Comparison(
            verdict=Verdict.PASS if self.ok else Verdict.FAIL,
            kind=self.kind,
            cause=self._cause(),
            evidence=self._evidence(reports),
            tolerance=self.tolerance,
            measured=max((row.max_rel_error for report in reports for row in report.comparisons), default=0.0),
        )

    def _cause(self) -> str | None:
        verdict = self.verdict
        if verdict == "ok":
            return None
        if verdict == "mismatch":
            findings = self._findings_to_show()
            if findings:
                return findings[0].message
            return f"a gradient differs from {self.reference_name}'s beyond the tolerance"
        if verdict == "changes_model":
            return self.side_effects[0].message
        return self.reduction.message

    def _evidence(self, reports: list["GradReport"]) -> str:
        """The tensors beyond the tolerance against the first reference that has any, or that
        there are none."""
        for report in reports:
            wrong = [row for row in report.comparisons if not row.ok]
            if wrong:
                listed = ", ".join(f"{row.name} (relative error {row.max_rel_error:.3g})" for row in wrong[:4])
                more = f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""
                return (f"{len(wrong)} of {len(report.comparisons)} tensors beyond the tolerance against "
                        f"{report.reference_name}: {listed}{more}")
        also = " and finite differences" if len(reports) > 1 else ""
        return f"all {len(self.comparisons)} tensors within the tolerance against {self.reference_name}{also}"

    def to_json(self) -> dict:
        """The report as one JSON-ready object.

        The shared keys (verdict, kind, cause, evidence, criterion, tolerance, measured; see
        `gdlab.comparison`), then: ``outcome`` this report's own word (ok | mismatch |
        other_reduction | changes_model), ``parameter`` the first tensor beyond the tolerance or
        null, ``exit_code`` (0 pass, 1 fail), ``reference``, ``rtol``, ``atol``, ``tensors`` one
        row per tensor, ``findings`` (the diagnosis), ``reduction``, ``side_effects``,
        ``notes`` and ``finite_differences`` (the same object for that reference, or null).
        """
        comparison = self.comparison
        first_wrong = next((row.name for row in self.comparisons if not row.ok), None)
        if first_wrong is None and self.finite_differences is not None:
            first_wrong = next((row.name for row in self.finite_differences.comparisons if not row.ok), None)
        return {
            **comparison.to_json(),
            "outcome": self.verdict,
            "parameter": first_wrong,
            "exit_code": comparison.exit_code,
            "reference": self.reference_name,
            "rtol": self.rtol,
            "atol": self.atol,
            "tensors": [
                {
                    "name": row.name,
                    "shape": list(row.shape),
                    "reference_shape": list(row.reference_shape),
                    "max_abs_error": finite_or_none(row.max_abs_error),
                    "max_rel_error": finite_or_none(row.max_rel_error),
                    "ok": row.ok,
                }
                for row in self.comparisons
            ],
            "findings": [_finding_json(finding) for finding in self.findings],
            "reduction": _finding_json(self.reduction) if self.reduction is not None else None,
            "side_effects": [_finding_json(finding) for finding in self.side_effects],
            "notes": list(self.notes),
            "finite_differences": self.finite_differences.to_json() if self.finite_differences else None,
        }

    def render(self, width: int = 110) -> str:
        """The comparison as plain text: the loss, one table per reference, the diagnosis, the verdict."""
        console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False,
                          force_jupyter=False)  # a string, also inside a notebook (rich would display it there)
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


def _finding_json(finding: Finding) -> dict:
    fields = asdict(finding)
    if fields.get("factor") is not None:
        fields["factor"] = finite_or_none(fields["factor"])
    return fields


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
