"""Finds the values more than N standard deviations from the mean (N = --sigma, default 2).

Input: a JSON list of numbers. Reply: the indices of the outliers, ascending.
Run by hand: ``echo`` is not needed; without the runtime, input() is None and the script
uses a small demo list.
"""

from __future__ import annotations

import argparse

import numpy as np

import pybundle


def outlier_indices(values: list[float], sigma: float) -> list[int]:
    data = np.asarray(values, dtype=np.float64)
    distance = np.abs(data - data.mean())
    return [int(i) for i in np.flatnonzero(distance > sigma * data.std())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sigma", type=float, default=2.0)
    args = parser.parse_args()
    values = pybundle.input()
    if values is None:
        values = [1.0, 2.0, 1.5, 1.2, 30.0, 1.1, 0.9, 1.3, 1.4, 1.0]
    pybundle.reply(outlier_indices(values, args.sigma))


if __name__ == "__main__":
    main()
