"""Implementations of the ``stvg`` subcommands (one module each; Hydra config in ``conf/``)."""
