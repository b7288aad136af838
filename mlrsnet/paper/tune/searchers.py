"""The searchers: one :class:`Searcher` per searcher, registered in :data:`SEARCHERS`.

Everything the suite knows about a searcher lives in its entry here (its title in tables, the
options a spec may pass it, which of them seeds it and the library's default seed, how its
search space is encoded, how its trials are numbered, how its ``search_alg`` and
``scheduler`` are built); the plan's validation, the ``--searchers`` help, the spaces, the
search and the reports read it from here.  Adding a searcher is one :func:`register` call.

The four searchers of the supplement, built the way Ray Tune ships them:

- ``bayesopt``: ``BayesOptSearch`` (Gaussian process, UCB; its own default seed 42 and 10
  random warm-up trials unless the spec says otherwise), in ordered batches of
  :data:`BAYESOPT_MAX_CONCURRENT` trials (``max_concurrent``), so its path does not depend
  on how many trials the machine runs at once;
- ``bohb``: ``TuneBOHB`` with the ``HyperBandForBOHB`` scheduler; the budget is the epoch
  (``time_attr="epoch"``, ``max_t`` = the profile's epochs), weak configurations stop at
  the lower rungs and only the promising ones train fully; the reduction factor is the one
  closest to 3 for which every bracket's last rung is the full budget
  (:func:`bohb_reduction_factor`: 5 epochs -> 5, 150 -> 15, 200 -> 10);
- ``random``: Tune's ``BasicVariantGenerator`` sampling the log-uniform space;
- ``grid``: the same generator over ``tune.grid_search`` candidates.

Only options the spec gives are passed, and the seed: everything else is the library's
default.  Every seedable searcher is seeded (:attr:`Searcher.default_seed`: BayesOpt's own 42,
else :data:`DEFAULT_SEED`) unless the spec gives its seed, and the seed is recorded.  Importing this
module does not import Ray (the command line lists the names from here): Ray is imported
inside the build functions, when a search starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlrsnet.errors import UserError

#: How a searcher takes the method's search space (see :func:`mlrsnet.paper.tune.spaces.ray_space`):
#: ``native``: ``tune.loguniform`` / ``tune.uniform`` / ``tune.choice`` as declared;
#: ``log10``: continuous ranges only, a log-uniform dimension searched as its ``log10``
#: uniformly (for samplers that drop log-uniform priors) and decoded back in the trial;
#: ``grid``: ``tune.grid_search`` over candidates; the grid's points are the trials.
SPACE_ENCODINGS = ("native", "log10", "grid")

#: ``build(options, max_epochs) -> (search_alg, scheduler)``; ``options`` is a fresh dict of
#: the spec's keyword arguments for the searcher (only keys in :attr:`Searcher.options`).
Build = Callable[[dict[str, Any], int], tuple[Any, Any]]


@dataclass(frozen=True)
class Searcher:
    name: str
    #: As tables and labels write it ("BayesOpt", "random search").
    title: str
    build: Build
    #: Keyword arguments a spec may give (``[tune.profiles.P] NAME = {...}``), spelled as the
    #: library spells them.
    options: frozenset[str] = frozenset()
    #: The option that seeds the searcher (``None``: it cannot be seeded) ...
    seed_option: str | None = None
    #: ... and the seed it runs with when the spec leaves that option out (BayesOpt: the
    #: library's own 42; random and BOHB: :data:`DEFAULT_SEED`, so that a search run again
    #: samples the same configurations).  Recorded in every trial's ``searcher_seed`` tag and
    #: in the search's plan record.
    default_seed: int | None = None
    #: One of :data:`SPACE_ENCODINGS`.
    space: str = "native"
    #: Added to the running number in Tune's experiment tag so trials count from 1 (Tune's
    #: basic variant generator counts from 0, searchers from 1).
    trial_offset: int = 0
    #: An option of ours (not the library's) that picks another encoding from
    #: :attr:`space_choices` for a search; recorded in the trials' ``space_encoding`` tag.
    space_option: str | None = None
    space_choices: tuple[str, ...] = ()
    #: It searches continuous ranges only (no ``choice`` dimensions).
    continuous_only: bool = False
    #: Tune can restore an interrupted search of it (``Tuner.restore``).  When not, an
    #: interrupted search starts again from its first trial under a new ``search_id`` (the
    #: trials of the interrupted one stay in the store, outside Table 1).
    restorable: bool = True

    def __post_init__(self) -> None:
        if self.space not in SPACE_ENCODINGS:
            raise ValueError(f"searcher {self.name!r}: space {self.space!r} is not one of {SPACE_ENCODINGS}")
        if self.seed_option is not None and self.seed_option not in self.options:
            raise ValueError(f"searcher {self.name!r}: seed option {self.seed_option!r} is not among its options")
        if self.default_seed is not None and self.seed_option is None:
            raise ValueError(f"searcher {self.name!r}: a default seed needs a seed option")

    def encoding(self, options: Mapping[str, Any] | None = None) -> str:
        """The space encoding a search with ``options`` uses (see :attr:`space_option`)."""
        chosen = (options or {}).get(self.space_option, self.space) if self.space_option else self.space
        if chosen != self.space and chosen not in self.space_choices:
            raise UserError(f"searcher {self.name!r}: {self.space_option} must be one of "
                            f"{', '.join(self.space_choices)}, not {chosen!r}")
        return chosen

    def library_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` without ours (what the library's constructor takes)."""
        return {k: v for k, v in options.items() if k not in (self.space_option, "max_concurrent")}

    @property
    def samples_are_grid_points(self) -> bool:
        """Whether the space itself lists the trials (one Tune sample expands to the grid)."""
        return self.space == "grid"


#: The seed of a seedable searcher whose library has no default of its own (random search,
#: BOHB: unseeded in Ray Tune, so three runs of one spec sampled three configuration sets).
DEFAULT_SEED = 0

#: The registry: name -> :class:`Searcher`, in the order the help and the tables list them.
SEARCHERS: dict[str, Searcher] = {}


def register(searcher: Searcher) -> Searcher:
    """Add ``searcher`` to :data:`SEARCHERS` (a name may be claimed once)."""
    if searcher.name in SEARCHERS and SEARCHERS[searcher.name] is not searcher:
        raise ValueError(f"two searchers are named {searcher.name!r}")
    SEARCHERS[searcher.name] = searcher
    return searcher


def get_searcher(name: str) -> Searcher:
    if name not in SEARCHERS:
        raise ValueError(f"unknown searcher {name!r}; available: {', '.join(SEARCHERS)}")
    return SEARCHERS[name]


def build_searcher(name: str, *, max_epochs: int,
                   options: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """``(search_alg, scheduler)`` for ``TuneConfig``; the scheduler is ``None`` except for BOHB.

    Metric and mode are left to ``TuneConfig`` (Tune refuses them twice)."""
    entry = get_searcher(name)
    opts = entry.library_options(options or {})
    if entry.seed_option is not None and entry.default_seed is not None:
        opts.setdefault(entry.seed_option, entry.default_seed)
    search_alg, scheduler = entry.build(opts, max_epochs)
    limit = max_concurrent(name, options)
    if limit is not None:
        from mlrsnet.paper.tune.limiter import OrderedBatches

        search_alg = OrderedBatches(search_alg, limit)
    return search_alg, scheduler


class _Titles(Mapping[str, str]):
    """``name -> title`` of the registered searchers, read live from :data:`SEARCHERS`."""

    def __getitem__(self, name: str) -> str:
        return SEARCHERS[name].title

    def __iter__(self) -> Iterator[str]:
        return iter(SEARCHERS)

    def __len__(self) -> int:
        return len(SEARCHERS)


TITLES: Mapping[str, str] = _Titles()


# -- the supplement's four ----------------------------------------------------------------
#: Trials of a BayesOpt search suggested and run together, as one batch, before the Gaussian
#: process learns their results (:class:`mlrsnet.paper.tune.limiter.OrderedBatches`): the
#: search path is then the same on 1 GPU or 8.  2 by default: what a 2-core machine runs with
#: one-core trials (the ``mini`` searches; a larger batch idles a core while BayesOpt waits
#: for its random warm-up's results); a spec may set ``max_concurrent`` per profile
#: (``table1.toml``: 8 at ``paper``).  The value used is recorded in the search's plan file
#: (``mlrsnet-search.json``).
BAYESOPT_MAX_CONCURRENT = 2


def max_concurrent(name: str, options: Mapping[str, Any] | None = None) -> int | None:
    """The concurrency limit a search of searcher ``name`` runs with (None: no limit)."""
    if name != "bayesopt":
        return None
    value = (options or {}).get("max_concurrent", BAYESOPT_MAX_CONCURRENT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"bayesopt: max_concurrent must be a whole number >= 1, not {value!r}")
    return value


def _bayesopt(opts: dict[str, Any], max_epochs: int) -> tuple[Any, Any]:
    from ray.tune.search.bayesopt import BayesOptSearch

    return BayesOptSearch(**opts), None


def hyperband_brackets(max_t: int, reduction_factor: float) -> list[tuple[int, list[int]]]:
    """``(initial trials, rungs in epochs)`` of each bracket ``HyperBandForBOHB`` creates for
    ``max_t`` and ``reduction_factor``, in the order it fills them (largest first).

    Computed with the scheduler's own arithmetic (its ``_s_max_1``, ``_get_r0`` and the
    brackets' successive halving), without trials: a bracket whose first rung rounds to 0
    is skipped, as the scheduler skips it."""
    from ray.tune.schedulers import HyperBandForBOHB

    scheduler = HyperBandForBOHB(time_attr="epoch", max_t=max_t, reduction_factor=reduction_factor)
    out = []
    for s in reversed(range(scheduler._s_max_1)):
        if scheduler._get_r0(s) == 0:
            continue
        bracket = scheduler._create_bracket(s)
        rungs = [int(bracket._cumul_r)]
        while bracket._halves > 0:
            bracket.successive_halving("objective", 1.0)
            rungs.append(int(bracket._cumul_r))
        out.append((int(bracket._n0), rungs))
    return out


def _reaches(max_t: int, reduction_factor: float) -> bool:
    return all(rungs[-1] == max_t for _, rungs in hyperband_brackets(max_t, reduction_factor))


def bohb_reduction_factor(epochs: int) -> int:
    """The reduction factor BOHB runs with for ``epochs`` (HyperBand's ``max_t``): the
    integer closest to BOHB's default 3 (in ratio; the larger on a tie) for which the last
    rung of *every* bracket is the full budget.  HyperBand's rungs are
    ``int(max_t / eta**s) * eta**k`` capped at ``max_t``, so with ``eta`` = 3 they miss 5,
    150 and 200 epochs (last rungs 3, 81-150 and 162-200): no trial of the largest
    brackets would train the full budget.  2, 3 -> 3; 4 -> 4; 5 -> 5; 150 -> 15; 200 -> 10."""
    import math

    candidates = sorted(range(2, max(int(epochs), 3) + 1), key=lambda e: (abs(math.log(e / 3)), -e))
    for eta in candidates:
        if _reaches(int(epochs), eta):
            return eta
    return max(int(epochs), 2)  # one rung of max_t: always reaches it


def stop_epochs(name: str, options: Mapping[str, Any] | None, max_epochs: int) -> set[int]:
    """The epochs (from 1) after which a trial of searcher ``name`` can end: its last, and
    for BOHB every rung of HyperBand's brackets (where the scheduler stops or pauses it)."""
    epochs = {int(max_epochs)}
    if name == "bohb":
        eta = (options or {}).get("reduction_factor") or bohb_reduction_factor(max_epochs)
        for _, rungs in hyperband_brackets(int(max_epochs), eta):
            epochs.update(int(r) for r in rungs)
    return epochs


def _bohb(opts: dict[str, Any], max_epochs: int) -> tuple[Any, Any]:
    from ray.tune.schedulers import HyperBandForBOHB

    from mlrsnet.errors import UserError
    from mlrsnet.paper.tune.bohb import ResumableTuneBOHB

    eta = opts.pop("reduction_factor", None)
    if eta is None:
        eta = bohb_reduction_factor(max_epochs)
    elif not _reaches(max_epochs, eta):
        last = sorted({rungs[-1] for _, rungs in hyperband_brackets(max_epochs, eta)})
        raise UserError(
            f"bohb: reduction_factor {eta} with {max_epochs} epochs ends HyperBand's brackets "
            f"at epochs {', '.join(map(str, last))}, so no trial of some bracket trains the full "
            f"budget; leave it out (then {bohb_reduction_factor(max_epochs)} is used) or pick "
            f"one for which {max_epochs} is a rung of every bracket")
    scheduler = HyperBandForBOHB(time_attr="epoch", max_t=max_epochs, reduction_factor=eta)
    return ResumableTuneBOHB(**opts), scheduler


def _basic_variants(opts: dict[str, Any], max_epochs: int) -> tuple[Any, Any]:
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(**opts), None


register(Searcher(
    "bayesopt", "BayesOpt", _bayesopt,
    options=frozenset({"random_state", "random_search_steps", "utility_kwargs", "patience",
                       "skip_duplicate", "bayesopt_space", "max_concurrent"}),
    seed_option="random_state", default_seed=42,  # BayesOptSearch fixes 42
    # The paper's declared (log-uniform) space handed to Ray as is: BayesOptSearch drops the
    # log-uniform sampler (ray/tune/search/bayesopt/bayesopt_search.py, convert_search_space)
    # and searches the bounds uniformly, which is what produced the supplement's Table 1 (its
    # ResNet-18/CIFAR-10 value is the 3rd random probe of bayes_opt with seed 42 on those
    # bounds).  bayesopt_space = "log10" searches log10(value) uniformly instead.
    space="native", space_option="bayesopt_space", space_choices=("native", "log10"),
    continuous_only=True,
))
register(Searcher(
    "bohb", "BOHB", _bohb,
    # reduction_factor goes to the HyperBandForBOHB scheduler
    options=frozenset({"seed", "bohb_config", "reduction_factor"}),
    # Restored, HyperBandForBOHB's brackets leave the paused trials paused for ever and Tune
    # waits ("No trial is running and no new trial has been started"): ray-project/ray#39900,
    # seen here on a Table 1 search resumed after Ctrl-C.
    restorable=False,
    seed_option="seed", default_seed=DEFAULT_SEED,
))
register(Searcher(
    "random", "random search", _basic_variants,
    options=frozenset({"random_state"}), seed_option="random_state", default_seed=DEFAULT_SEED,
    trial_offset=1,
))
register(Searcher("grid", "grid search", _basic_variants, space="grid", trial_offset=1))


def __getattr__(name: str) -> Any:
    # Searcher states pickled before ResumableTuneBOHB moved to mlrsnet.paper.tune.bohb name it
    # here; resolve it lazily so this module still imports without Ray.
    if name == "ResumableTuneBOHB":
        from mlrsnet.paper.tune.bohb import ResumableTuneBOHB

        return ResumableTuneBOHB
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
