#!/usr/bin/env python
"""Print the judges' measured figures (their manifest) as the markdown tables of docs/data.md.

    python tools/judge_tables.py [JUDGES_DIR]      # default: the shipped judges
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlang.judge.measure import markdown_tables  # noqa: E402

if __name__ == "__main__":
    print(markdown_tables(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
