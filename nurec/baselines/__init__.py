"""Classical reconstructions: LineFit, likelihood track and cascade fits, charge energy,
a BDT angular-error estimator and a CNN energy regressor.

Every method is an object with ``name``, ``version`` and ``reconstruct(events)``
returning the one prediction schema (nurec.io.schema.PREDICTION_COLUMNS first);
they are looked up by name through nurec.methods.registry.
"""
