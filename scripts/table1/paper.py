"""The paper's side of Table 1: systems, their titles, and the published numbers.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, Table 1.
"""

from __future__ import annotations

from hamflow_hgn.models import TABLE1_ROWS

__all__ = ["SYSTEMS", "SYSTEM_TITLES", "ROWS", "BASELINES", "PAPER_TABLE1"]

SYSTEMS: tuple[str, ...] = ("mass_spring", "pendulum", "two_body", "three_body")
SYSTEM_TITLES = {
    "mass_spring": "Mass-spring",
    "pendulum": "Pendulum",
    "two_body": "Two-body",
    "three_body": "Three-body",
}
ROWS = TABLE1_ROWS
"""Table 1's rows in the paper's order (:data:`hamflow_hgn.models.TABLE1_ROWS`)."""
BASELINES = ("pixel_hnn_mlp", "pixel_hnn_conv")

# Toth et al. 2019, Table 1: average pixel MSE over a 30-step unroll, x 1e+4, mean ± std,
# per model, system and split ("HNN" is PixelHNN with MLPs, "HNN (conv)" with HGN's networks).
PAPER_TABLE1: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "pixel_hnn_mlp": {
        "mass_spring": {"train": (50.38, 1.75), "test": (104.37, 52.51)},
        "pendulum": {"train": (69.39, 0.89), "test": (64.62, 0.87)},
        "two_body": {"train": (80.52, 1.79), "test": (78.9, 1.93)},
        "three_body": {"train": (61.63, 3.31), "test": (57.54, 2.39)},
    },
    "pixel_hnn_conv": {
        "mass_spring": {"train": (18.97, 0.77), "test": (119.09, 69.17)},
        "pendulum": {"train": (13.14, 0.66), "test": (106.07, 41.94)},
        "two_body": {"train": (7.3, 0.38), "test": (120.71, 44.48)},
        "three_body": {"train": (15.22, 1.99), "test": (62.77, 37.57)},
    },
    "hgn_euler": {
        "mass_spring": {"train": (3.67, 1.09), "test": (6.2, 2.69)},
        "pendulum": {"train": (5.43, 2.53), "test": (10.93, 4.32)},
        "two_body": {"train": (6.62, 3.93), "test": (15.06, 7.01)},
        "three_body": {"train": (7.51, 3.49), "test": (9.4, 3.92)},
    },
    "hgn_deterministic": {
        "mass_spring": {"train": (0.23, 0.23), "test": (3.07, 1.06)},
        "pendulum": {"train": (0.79, 1.24), "test": (10.68, 3.19)},
        "two_body": {"train": (2.34, 2.3), "test": (14.47, 5.24)},
        "three_body": {"train": (4.1, 2.05), "test": (5.17, 1.96)},
    },
    "hgn_no_fpsi": {
        "mass_spring": {"train": (4.95, 1.71), "test": (7.04, 2.55)},
        "pendulum": {"train": (6.83, 3.29), "test": (13.98, 4.94)},
        "two_body": {"train": (6.35, 3.86), "test": (16.49, 6.6)},
        "three_body": {"train": (8.37, 3.13), "test": (10.41, 3.72)},
    },
    "hgn_leapfrog": {
        "mass_spring": {"train": (3.84, 1.07), "test": (6.23, 2.03)},
        "pendulum": {"train": (4.9, 1.86), "test": (11.72, 4.14)},
        "two_body": {"train": (6.36, 3.29), "test": (16.47, 7.15)},
        "three_body": {"train": (7.88, 3.55), "test": (9.8, 3.72)},
    },
}
