"""Compare the fitted numbers of two workflow runs, bit for bit: every results/fits/**/*.json.

    python tools/compare_fits.py RUN_A/results RUN_B/results

A refactoring must change no number: run the default before and after it (in two clean clones) and
compare. Exit 0 when every fits file exists in both runs and is identical; else each difference is
printed (file, key path, both values) and the exit code is 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def differences(a, b, where: str = "") -> list[str]:
    """Key paths where two parsed JSON values differ (floats compared exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{key}: only in one run" for key in sorted(set(a) ^ set(b), key=str)]
        for key in sorted(set(a) & set(b), key=str):
            out += differences(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} against {b!r}"]


def compare(results_a: Path, results_b: Path) -> list[str]:
    files_a = {p.relative_to(results_a) for p in (results_a / "fits").rglob("*.json")}
    files_b = {p.relative_to(results_b) for p in (results_b / "fits").rglob("*.json")}
    out = [f"{name}: only in {results_a if name in files_a else results_b}" for name in sorted(files_a ^ files_b)]
    for name in sorted(files_a & files_b):
        text_a, text_b = (results_a / name).read_text(), (results_b / name).read_text()
        if text_a != text_b:
            found = differences(json.loads(text_a), json.loads(text_b))
            out += [f"{name}{d}" for d in found] or [f"{name}: same values, different text"]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    results_a, results_b = map(Path, argv)
    for path in (results_a, results_b):
        if not (path / "fits").is_dir():
            print(f"compare_fits: {path}/fits is not a folder; give the results/ folders of two runs", file=sys.stderr)
            return 2
    found = compare(results_a, results_b)
    n_files = len(list((results_a / "fits").rglob("*.json")))
    for line in found:
        print(line)
    print(f"{n_files} fits files compared: {'identical' if not found else f'{len(found)} differences'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
