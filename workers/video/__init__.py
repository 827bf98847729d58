"""Video workers: decode segments with PyAV, describe them in words, in Ray actors."""
