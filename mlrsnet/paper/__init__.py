"""The paper's apparatus: the twelve task settings and their profiles, the models, the data,
the Ray Tune searches and the reports.  Built on the harness (:mod:`mlrsnet.harness`)."""
