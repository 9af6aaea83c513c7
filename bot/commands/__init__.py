"""Sub-commands of `clusterbot`: each module adds its parser and a `run(args) -> int`."""
