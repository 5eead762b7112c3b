"""The DNAS core: the supernet, the loss and its budget, the search loop, convergence, plots."""
