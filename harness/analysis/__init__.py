"""Reading runs: significance and sequential statistics, machine noise, comparisons,
histories with their change points, and the HTML report.
"""
