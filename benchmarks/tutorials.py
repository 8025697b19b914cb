"""How long each tutorial takes a reader: every runnable block of
docs/tutorials/*.md run as written, in a fresh folder per page, timed.

    python benchmarks/tutorials.py [--pages own-data,distill,ipi] [--as-tested] [--keep]

--as-tested: with the tests' stand-ins (tests/tutorials.py STAND_INS), to see
what the suite pays. The LAMMPS page needs a pair_nequip_allegro checkout
named pair_nequip_allegro in its folder: --lammps-source DIR links one in.
Prints a table: page, block, language, first line, seconds; and each page's
total."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tutorials import STAND_INS, TUTORIALS, run_block, runnable_blocks  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="own-data,distill,ipi", help="comma-separated page names")
    parser.add_argument("--as-tested", action="store_true", help="apply the tests' stand-ins")
    parser.add_argument("--lammps-source", help="a pair_nequip_allegro checkout, for the LAMMPS page")
    parser.add_argument("--keep", action="store_true", help="keep the working folders")
    args = parser.parse_args()
    rows, totals = [], {}
    for name in args.pages.split(","):
        page = TUTORIALS / f"{name}.md"
        work = Path(tempfile.mkdtemp(prefix=f"tutorial-{name}-"))
        if args.lammps_source:
            (work / "pair_nequip_allegro").symlink_to(Path(args.lammps_source).resolve())
        replace = STAND_INS.get(page.name, {}) if args.as_tested else {}
        for block in runnable_blocks(page, replace):
            seconds = run_block(block, work)
            first = block.code.strip().splitlines()[0][:60]
            rows.append((name, block.index, block.language, first, seconds))
            print(f"{name:10s} {block.index:3d}  {block.language:6s} {first:60s} {seconds:7.1f} s", flush=True)
        totals[name] = sum(r[4] for r in rows if r[0] == name)
        if not args.keep:
            shutil.rmtree(work)
    print()
    print("page        total")
    for name, seconds in totals.items():
        print(f"{name:10s} {seconds / 60:6.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
