"""Dataset loaders. Each reads files that ship inside an installed package; none touches the network."""
