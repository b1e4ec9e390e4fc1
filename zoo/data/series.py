"""Environmental sensor series: weekly Mauna Loa CO2 (statsmodels' bundled copy)."""

from __future__ import annotations

import numpy as np

MAUNA_LOA_CO2 = {
    "name": "Mauna Loa weekly atmospheric CO2 (ppm), 1958-2001",
    "origin": "statsmodels.datasets.co2 (bundled CSV; Scripps Institution of Oceanography)",
    "what": "weekly CO2 concentration from a continuous sensor; 59 missing weeks filled by linear interpolation",
    "season_length": 52,
    "licence": "public domain (statsmodels' notes on the dataset: 'This is public domain.')",
}


def mauna_loa_co2() -> np.ndarray:
    """The weekly series ``[2284]`` float32, gaps linearly interpolated."""
    from statsmodels.datasets import co2

    return co2.load_pandas().data["co2"].interpolate().to_numpy("float32")
