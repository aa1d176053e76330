"""Campaign: X-ray CTR phase retrieval of LaAlO3/SrTiO3 films (MAMBA, seed 004)."""
