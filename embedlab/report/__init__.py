"""Reports: readable tables of results."""
