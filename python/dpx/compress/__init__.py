"""`dpx compress`: a frozen model whose descriptor tabulates its embedding nets
(Descriptor.enable_compression; the tables: dpx.model.tabulate)."""
