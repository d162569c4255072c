"""Model compression: tabulated embedding nets (DeePMD-kit's `dp compress` format).

tabulate: DeePMD-kit's tabulate_fusion ops in PyTorch, so that dpx evaluates compressed files
without DeePMD-kit's op library."""
