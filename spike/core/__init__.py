"""Layer 0 of `spike`: conventions, configs and the backend registry. Imports nothing heavy."""
