"""Reproducing Table 1 of the HGN paper: ``paper`` (numbers), ``plan`` (runs), ``report`` (page).

``scripts/reproduce_table1.py`` is the command line over these modules.
"""
