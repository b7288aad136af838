"""The harness: the method contract, the one training loop and its step, experiments,
executors, the Parquet store and the command line.

Imports only :mod:`mlrsnet.snet` below it; the paper's tasks, models, data, searches and
reports (:mod:`mlrsnet.paper`) plug in through the registries in
:mod:`mlrsnet.harness.registry`.
"""
