"""Word statistics for a text."""

from __future__ import annotations

import os
from collections import Counter

__version__ = "0.1.0"


def report(text: str) -> dict[str, object]:
    """Counts words and the most common one; the style comes from the environment."""
    words = [w.strip(".,;:!?").lower() for w in text.split()]
    words = [w for w in words if w]
    common = Counter(words).most_common(1)
    return {
        "words": len(words),
        "distinct": len(set(words)),
        "most_common": common[0][0] if common else None,
        "style": os.environ.get("PYREPORT_STYLE", "unset"),
    }
