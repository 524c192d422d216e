"""Console output, hardware probing and other glue shared by the entry points."""
