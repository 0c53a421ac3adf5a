"""vexplain's core: interfaces, registry, hook specs, the explain() entry point, post-processing."""
