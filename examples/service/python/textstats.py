"""Text statistics, served by the `service` example's worker pool.

Imported once per worker process; ``analyze`` runs once per HTTP request.
"""

from __future__ import annotations

import collections
import hashlib
import re

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def analyze(text: str, top: int = 3) -> dict:
    words = [w.lower() for w in _WORD.findall(text)]
    counts = collections.Counter(words)
    return {
        "words": len(words),
        "unique": len(counts),
        "top": [[word, n] for word, n in counts.most_common(top)],
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(analyze(sys.stdin.read()), indent=2))
