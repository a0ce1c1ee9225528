"""Console scripts: each parses its arguments, calls one library function, prints."""
