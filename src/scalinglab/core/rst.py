"""reStructuredText for the report captions (Snakemake renders captions as RST, not Markdown)."""

from __future__ import annotations


def simple_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of an RST simple table: columns padded to their widest cell, framed by '=' rules."""
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(header)]
    rule = "  ".join("=" * w for w in widths)
    return [
        rule,
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
        rule,
        *("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows),
        rule,
    ]
