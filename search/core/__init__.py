"""The DNAS core: the supernet, the objective (LUT, budget, loss), the search loop and a whole
search run, convergence, plots."""
