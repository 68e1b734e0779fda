"""Super-resolution engines behind one interface (bicubic baseline and the trained network)."""
