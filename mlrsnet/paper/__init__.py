"""The paper's apparatus: the twelve task settings and their profiles, the models, the data,
the Ray Tune searches and the reports.  Built on the harness (:mod:`mlrsnet.harness`)."""

#: The reproduction plan ``mlrsnet-bench reproduce`` runs by default (:mod:`mlrsnet.paper.reproduce`).
DEFAULT_PLAN = "benchmarks/reproduce_all.toml"
