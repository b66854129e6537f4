"""Many runs as one Optuna study: the sweep's grid, ``--adaptive`` and ``--tune-lr``, the pin loop's workers and the
demo that chains them."""
