"""Bayesian imaging with plug-and-play priors."""
__version__ = "0.1.0"
