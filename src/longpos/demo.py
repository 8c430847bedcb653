"""``longpos demo``: the main job on a fresh CPU machine.

Trains tiny RoPE, NoPE, R2N1, RePo and DroPE models on the same budget on successor lookup
in a linearised graph (the suite's token-level ``graph_tokens``: an 8-node edge list ``KEY a b
SEP`` with random filler between the edges; training asks many ``QUERY a b`` successors, an
evaluation question asks one at the very end; chosen from the reproduction, see
``DEFAULT_TASK``; ``--plan.task`` runs ``mqar``, ``table_tokens`` or ``order_tokens``),
evaluates them at L, 2L and 4L, and writes to the output folder:

- ``results.json``: per method and length: accuracy, 95% interval, samples; the setup;
- ``report.md``: the table and what it means;
- ``accuracy_vs_length.png``;
- ``positions.html``: the RePo model's assigned positions on an evaluation sample;
- ``runs/<method>-s<seed>/``: each training run (metrics.jsonl, model/) and its
  evaluation (samples.jsonl, results.json, summary.md).

DroPE uses the same budget: it is the RoPE run dropped at 87.5% of its steps (the
paper's recommendation) and recalibrated at L for the remaining 12.5%.

Calibration (see README, "How the demo was calibrated"): tiny models learn retrieval
only after a plateau, so the tasks are dense (every question is a target), keys and values
are single symbols from 64, L = 64, 3 layers of width 64 with unit-std embeddings (the
``fan_in`` init; with std 0.02 embeddings no model left the copy-any-value plateau), 2,000
steps of 32 sequences at lr 3e-3. Runs go to worker processes with one thread each (tiny
matrices are faster on one thread; two workers use both cores).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from longpos.config import ModelConfig
from longpos.io import atomic_write_json, atomic_write_text
from longpos.positions.repo import RePoConfig
from longpos.train.config import DataConfig, OptimConfig, TrainConfig

METHODS: tuple[str, ...] = ("rope", "nope", "r2n1", "repo", "drope")
"""The default comparison: the core methods and their baselines."""
PEERS: tuple[str, ...] = (
    "xpos", "alibi", "fire", "pope", "cope", "fox", "stickbreaking", "nope_every_2",
)  # fmt: skip
"""Further methods ``--methods`` accepts: each a plan of the technique registry, trained the
same way (``nope_every_2``: NoPE every second layer, the demo's 3 layers giving one)."""
CONTINUED: tuple[str, ...] = ("repo_cpt",)
"""Further methods derived from the RoPE run, on the same budget: ``repo_cpt`` is RePo as the
paper trains it (arXiv 2512.14391): RoPE for the first ``cpt_fraction`` of the steps, then
RePo layers added (:func:`longpos.surgery.set_plan`) and trained for the rest."""
ABLATIONS: dict[str, dict[str, Any]] = {
    "repo_l0": dict(plan="repo", repo_start=0),
    "repo_l2": dict(plan="repo", repo_start=2),
    "repo_linear": dict(plan="repo", repo=RePoConfig(variant="linear")),
    "repo_linear_shared": dict(plan="repo", repo=RePoConfig(variant="linear_shared")),
}
"""RePo's cheap ablations (arXiv 2512.14391 and its code), trained from scratch like ``repo``:
the first RePo layer (``repo`` starts at layer 1 of 3: ``repo_l0`` has no RoPE layer at all,
``repo_l2`` RePo in the top layer only) and the simpler predictors (``linear``: d -> H,
``linear_shared``: d -> 1 for all heads) instead of the SwiGLU one."""
MEMORY: dict[str, dict[str, Any]] = {
    "fwpkm": dict(
        plan="rope",
        memory=dict(kind="fwpkm", layers="1", pswa_prob=0.9,
                    fwpkm=dict(d_k=32, d_v=32, sqrt_n=32, topk=8, chunk=16)),
    ),
}  # fmt: skip
"""FwPKM (arXiv 2601.00671) on the RoPE model: one fast-weight memory before the attention of
layer 1 (N = 1024 slots, top-8, chunk 16), trained with the paper's pSWA (p = 0.9, window =
chunk), the setting of ``benchmarks/fwpkm_quality.py``; evaluated writing every chunk."""
METHOD_CONFIGS: dict[str, dict[str, Any]] = {**ABLATIONS, **MEMORY}
"""Methods that are not a plain plan name: their ``ModelConfig`` fields."""
DERIVED: tuple[str, ...] = ("drope", *CONTINUED)
"""Methods that start from a snapshot of the seed's RoPE run."""
ALL_METHODS: tuple[str, ...] = METHODS + CONTINUED + tuple(ABLATIONS) + tuple(MEMORY) + PEERS
DemoTask = Literal["mqar", "table_tokens", "graph_tokens", "order_tokens"]
MQAR_OPTIONS: dict[str, Any] = dict(num_symbols=64, num_kv_pairs=8)
DEFAULT_TASK: DemoTask = "graph_tokens"
"""The demo's task, chosen from the reproduction (README, "Small-scale reproduction"): with
``table_tokens`` it tells the most methods apart (disjoint seed ranges) and, of the two, it
decides more of the papers' claims."""
TASK_TITLES: dict[str, str] = {
    "mqar": "noisy multi-key retrieval",
    "table_tokens": "table lookup in a linearised table",
    "graph_tokens": "successor lookup in a linearised graph",
    "order_tokens": "lookup by an ordered two-symbol key",
}
DEMO_TASKS: dict[str, dict[str, Any]] = {
    "mqar": MQAR_OPTIONS,
    # Structured data at the same scale: a 4-row, 2-column linearised table (8 cells) and
    # an 8-node edge list, each in about half of L = 64 with filler between the records.
    # Calibrated on RoPE (benchmarks/results/calibration-cpu/): with the `ANS` marker between
    # question and answer no model left the copy-some-edge plateau in 2,000 steps; with the
    # answer right after the question (`answer_marker=False`, as in MQAR) RoPE learns the
    # graph. The table was learned once each cell carries its row key (`KEY c0 r v0 c1 r v1
    # SEP`, question `QUERY c r`): RoPE 100% held-out at 2,000 steps, 84% greedy at L; with
    # the row key once per row no setting tried left the copy-some-cell plateau.
    "table_tokens": dict(
        num_symbols=64, rows=4, cols=2, filler="between", answer_marker=False, row_key_per_cell=True
    ),  # fmt: skip
    "graph_tokens": dict(num_symbols=64, nodes=8, hops=1, filler="between", answer_marker=False),
    # Order necessary in distribution: all 6 ordered pairs of 3 key symbols are keys. With
    # 8 questions per training sequence the records sat with ~1 filler token (29 in an eval
    # sample at L) and RoPE answered 68% at L after 4,000 steps; capped at 4 questions (~17
    # filler tokens) RoPE reached 85% at L (calibrated on RoPE alone, 4,000 steps).
    "order_tokens": dict(
        num_symbols=64, key_symbols=3, filler="between", answer_marker=False, max_questions=4
    ),  # fmt: skip
}
"""The token-level tasks the demo pipeline runs, with their fixed options (the default
demo uses ``DEFAULT_TASK``; ``benchmarks/reproduce.py`` runs them all)."""
TASK_DESCRIPTIONS: dict[str, str] = {
    "mqar": "8 key-value pairs `k v` at the start, then queries `k v` at power-law gaps among"
    " random symbols; training scores every queried value, a question asks one key at the end",
    "table_tokens": "a linearised 4 x 2 table whose cells carry their row key, rows `KEY c0 r"
    " v c1 r v SEP` with random filler between them; training asks many `QUERY c r v` cells, a"
    " question asks one cell at the end; longer evaluation lengths add filler, not rows",
    "graph_tokens": "an edge list `KEY a b SEP` of a graph where every node has one successor,"
    " with random filler between the edges; training asks many `QUERY a b` successors, a"
    " question asks one at the end; longer evaluation lengths add filler, not edges",
    "order_tokens": "records `KEY a b v SEP` for all 6 ordered pairs of 3 key symbols (so"
    " `a b` and `b a` are both keys, with different values), random filler between them;"
    " training asks 4 `QUERY a b v`, a question asks one at the end; longer evaluation"
    " lengths add filler, not records",
}


def chance_levels(task: str) -> dict[str, float]:
    """Accuracy of guessing: ``uniform_value`` (a random symbol of the answer range) and
    ``copy_any_needle`` (the value of a random record: pair, table cell or edge); for
    ``order_tokens`` also ``order_blind`` (the best a model that ignores the order of the two
    key symbols can do: pick between the record and its swapped twin); for ``table_tokens``
    also ``row_only`` (the right row's cell of a random column: matching the row key alone)."""
    opts = DEMO_TASKS[task]
    symbols = opts["num_symbols"]
    if task == "graph_tokens":  # answers are node symbols, drawn from all content symbols
        return {"uniform_value": 1 / symbols, "copy_any_needle": 1 / opts["nodes"]}
    if task == "order_tokens":
        k = opts["key_symbols"]
        values = symbols - symbols // 2
        return {
            "uniform_value": 1 / values,
            "copy_any_needle": 1 / (k * (k - 1)),
            "order_blind": 0.5,
        }
    uniform = 1 / (symbols - symbols // 2)
    if task == "table_tokens":
        cells = opts["rows"] * opts["cols"]
        return {
            "uniform_value": uniform,
            "copy_any_needle": 1 / cells,
            "row_only": 1 / opts["cols"],
        }
    return {"uniform_value": uniform, "copy_any_needle": 1 / opts["num_kv_pairs"]}


@dataclass
class DemoPlan:
    """The calibrated budget of one demo run."""

    length: int = 64
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    samples: int = 100
    drop_fraction: float = 0.875
    cpt_fraction: float = 0.5
    """``repo_cpt``: the share of the steps trained as RoPE before the RePo layers are added."""
    length_multipliers: tuple[int, ...] = (1, 2, 4)
    """Evaluation lengths as multiples of the training length."""
    task: DemoTask = DEFAULT_TASK
    """The token-level task: ``graph_tokens`` (the default) or ``table_tokens`` (structured
    data), ``mqar`` (noisy multi-key retrieval), ``order_tokens`` (order necessary;
    calibrated at ``--steps 4000``); each task's options are fixed in ``DEMO_TASKS``."""

    def __post_init__(self) -> None:
        if self.task not in DEMO_TASKS:
            raise ValueError(f"task={self.task!r} is unknown; allowed: {', '.join(DEMO_TASKS)}")

    @property
    def task_options(self) -> dict[str, Any]:
        return DEMO_TASKS[self.task]

    @classmethod
    def quick(cls, task: DemoTask = DEFAULT_TASK) -> DemoPlan:
        return cls(steps=300, samples=40, task=task)


@dataclass
class DemoArgs:
    """Train tiny RoPE / NoPE / R2N1 / RePo / DroPE models on successor lookup in a linearised
    graph (``--plan.task`` picks another task) and compare them at 1x, 2x and 4x the training
    length."""

    out: Path = Path("longpos-demo")
    """Output folder."""
    quick: bool = False
    """A smoke run in under 2 minutes (too short for the models to learn much)."""
    seeds: int = 1
    """Training seeds per method (>= 1); more seeds show seed noise (each adds the full cost)."""
    workers: int = 2
    """Parallel training processes (one thread each)."""
    methods: str = ",".join(METHODS)
    """Comma-separated methods of ``ALL_METHODS``: rope, nope, r2n1, repo, drope (the default),
    repo_cpt, RePo's ablations (``ABLATIONS``), fwpkm and the peers (``PEERS``)."""
    steps: int | None = None
    """Override the calibrated number of training steps."""
    samples: int | None = None
    """Override the number of evaluation samples per length."""
    reuse: Path | None = None
    """An earlier demo folder run with the same plan: its finished runs of the methods asked
    for are copied instead of trained again (training is deterministic per method and seed)."""
    resume: bool = False
    """Keep the finished runs already in ``--out`` (of an interrupted run with the same plan)
    and train only the rest; without it ``--out``'s runs are deleted first."""
    plan: DemoPlan = field(default_factory=DemoPlan)


def model_config(plan: DemoPlan, technique: str, vocab_size: int) -> ModelConfig:
    """The demo's model with ``technique``: a plan name, or one of ``METHOD_CONFIGS``."""
    positions = METHOD_CONFIGS.get(technique, {"plan": technique})
    return ModelConfig(
        vocab_size=vocab_size, d_model=plan.d_model, n_layers=plan.n_layers,
        n_heads=plan.n_heads, max_seq_len=plan.length, **positions,
    )  # fmt: skip


def train_config(plan: DemoPlan, seed: int, steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=plan.batch_size, seq_len=plan.length, seed=seed,
        log_every=25, eval_every=0, eval_batches=2, progress=False, device="cpu",
        optim=OptimConfig(lr=plan.lr, warmup_steps=max(1, steps // 20)),
        data=DataConfig(kind="task", tasks=plan.task, options=json.dumps(plan.task_options)),
    )  # fmt: skip


def derived_step(plan: DemoPlan, method: str) -> int:
    """The RoPE step a derived method starts from (DroPE's drop, ``repo_cpt``'s switch)."""
    fraction = plan.drop_fraction if method == "drope" else plan.cpt_fraction
    return round(fraction * plan.steps)


def vocab_size(plan: DemoPlan) -> int:
    from longpos.tasks.symbolic import vocab_for

    return vocab_for(plan.task, **plan.task_options).vocab_size


# ------------------------------------------------------------------ one job (worker side)
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train (and for rope: also DroPE) one method / seed, then evaluate it."""
    from longpos.checkpoint import load_model
    from longpos.model import LongposLM
    from longpos.surgery import drop_positions, set_plan
    from longpos.train.loop import train

    torch.set_num_threads(1)
    plan = DemoPlan(**job["plan"])
    method, seed, root = job["method"], job["seed"], Path(job["root"])
    start = time.perf_counter()
    vocab = vocab_size(plan)
    technique = "rope" if method in DERIVED else method
    cfg = model_config(plan, technique, vocab)
    run_dir = root / f"{method}-s{seed}"
    model = LongposLM(cfg, torch.Generator().manual_seed(seed))
    tcfg = train_config(plan, seed, plan.steps)
    done = [run_dir]
    derived = sorted((derived_step(plan, m), m) for m in DERIVED if m in job["with"])
    if method != "rope" or not derived:
        train(model, tcfg, run_dir, resume=False)
    for i, (stop, name) in enumerate(derived if method == "rope" else []):
        # the RoPE run to this derived method's start (resuming after the first), a snapshot
        train(model if i == 0 else LongposLM(cfg), tcfg, run_dir, stop_after=stop, resume=i > 0)
        snapshot = load_model(run_dir / "checkpoint")
        if name == "drope":
            drop_positions(snapshot)
        else:  # repo_cpt: RePo layers added to the RoPE model, fresh predictors
            set_plan(snapshot, "repo", generator=torch.Generator().manual_seed(seed + 2000))
        offset = 1000 if name == "drope" else 2000
        rest = train_config(plan, seed + offset, plan.steps - stop)
        train(snapshot, rest, root / f"{name}-s{seed}", resume=False)
        done.append(root / f"{name}-s{seed}")
    if method == "rope" and derived:
        train(LongposLM(cfg), tcfg, run_dir)  # resumes from the checkpoint to the end
    for folder in done:
        evaluate_run(folder, plan, seed)
    seconds = round(time.perf_counter() - start, 1)
    return {"root": job["root"], "method": f"{method}-s{seed}", "seconds": seconds}


EVAL_BATCH = 16
"""Prompts decoded at once (the predictions equal one-by-one decoding)."""


def evaluate_run(folder: Path, plan: DemoPlan, seed: int) -> Any:
    """Greedy decoding on fresh samples at L, 2L, 4L through the evaluation runner."""
    from longpos.checkpoint import load_model
    from longpos.eval.adapter import LongposEvalModel
    from longpos.eval.runner import run_eval

    model = LongposEvalModel(load_model(folder / "model"))
    lengths = [plan.length * m for m in plan.length_multipliers]
    return run_eval(
        model, [plan.task], lengths, plan.samples, folder / "eval", seed=10_000 + seed,
        task_options={plan.task: plan.task_options}, progress=False, batch_size=EVAL_BATCH,
    )  # fmt: skip


# ------------------------------------------------------------------------- main side
def job_runs(job: dict[str, Any]) -> list[str]:
    """The run folders one job writes: its method's and, for RoPE, the derived methods'."""
    seed = job["seed"]
    derived = [m for m in DERIVED if m in job["with"]] if job["method"] == "rope" else []
    return [f"{m}-s{seed}" for m in [job["method"], *derived]]


def run_steps(plan: DemoPlan, method: str) -> int:
    """The steps one run trains: a derived method's from its start on the RoPE run."""
    return plan.steps - derived_step(plan, method) if method in DERIVED else plan.steps


def job_cost(job: dict[str, Any]) -> float:
    """A job's expected training time in RoPE steps: every run it trains (a derived method only
    from its start) counted twice for a memory method (its steps take about twice a RoPE step's
    time, ``benchmarks/results/reproduce-cpu``). Only the pool's order uses it."""
    plan = DemoPlan(**job["plan"])
    runs = [name.rsplit("-s", 1)[0] for name in job_runs(job)]
    steps = sum(run_steps(plan, m) for m in runs)
    return steps * (2.0 if job["method"] in MEMORY else 1.0)


PLAN_FILE = "plan.json"
"""In ``OUT/runs``: the plan the runs are trained with (what ``--resume`` checks)."""
JOB_SECONDS_FILE = "job_seconds.json"
"""In ``OUT/runs``: each finished job's seconds, written as the job finishes."""


def plan_differences(plan: DemoPlan, theirs: dict[str, Any]) -> list[str]:
    """The plan fields (task, options, steps, model, evaluation) that differ from ``theirs``."""
    ours = json.loads(json.dumps(asdict(plan)))
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))


def finished_runs(root: Path) -> set[str]:
    """The run folders under ``root`` that were trained and evaluated to the end."""
    return {p.name for p in root.iterdir() if (p / "eval" / "samples.jsonl").exists()}


def reusable_runs(source: Path, plan: DemoPlan) -> tuple[set[str], dict[str, float]]:
    """The finished run folders of the earlier demo folder ``source`` and their job times;
    refused unless ``source`` was run with the same plan."""
    path = source / "results.json"
    if not path.exists():
        raise ValueError(f"--reuse: {path} is missing (not a finished demo folder)")
    earlier = json.loads(path.read_text())
    differ = plan_differences(plan, earlier["setup"]["plan"])
    if differ:
        raise ValueError(f"--reuse: {source} was run with a different plan ({', '.join(differ)})")
    return finished_runs(source / "runs"), earlier.get("job_seconds", {})


def resumable_runs(root: Path, plan: DemoPlan) -> tuple[set[str], dict[str, float]]:
    """``--resume``: the finished runs already in ``root`` (``OUT/runs``) and their job times;
    refused when ``root`` holds runs of another plan or of a demo too old to say."""
    if not root.exists():
        return set(), {}
    plan_file = root / PLAN_FILE
    if not plan_file.exists():
        raise ValueError(f"--resume: {plan_file} is missing, so the runs in {root} cannot be "
                         "checked against the plan; run without --resume to start again")  # fmt: skip
    differ = plan_differences(plan, json.loads(plan_file.read_text()))
    if differ:
        raise ValueError(f"--resume: the runs in {root} were made with a different plan "
                         f"({', '.join(differ)}); run without --resume to start again")  # fmt: skip
    seconds_file = root / JOB_SECONDS_FILE
    seconds = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
    return finished_runs(root), seconds


def wall_time(setup: dict[str, Any]) -> str:
    """``"N s wall"``, naming the runs it does not cover (kept by ``--resume`` or copied by
    ``--reuse``: trained by an earlier invocation)."""
    text = f"{setup['wall_seconds']} s wall"
    if setup.get("pool_tasks"):
        text += f" (one pool for the runs of {', '.join(setup['pool_tasks'])})"
    earlier = []
    if setup.get("resumed_runs"):
        earlier.append(f"{len(setup['resumed_runs'])} runs kept from an earlier invocation")
    if setup.get("reused_runs"):
        reused = setup["reused_runs"]
        earlier.append(f"{len(reused['runs'])} runs copied from {reused['from']}")
    return text + (f" (not counting {' and '.join(earlier)})" if earlier else "")


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def steps_done(root: Path, names: list[str]) -> int:
    """Training steps finished so far, read from the runs' metrics files."""
    total = 0
    for name in names:
        path = root / name / "metrics.jsonl"
        if path.exists():
            lines = path.read_text().strip().splitlines()
            total += max((json.loads(x)["step"] for x in lines if x), default=0)
    return total


@dataclass
class DemoJobs:
    """One demo's runs still to train (``prepare_demo``), before a pool trains them."""

    args: DemoArgs
    plan: DemoPlan
    methods: list[str]
    root: Path
    """``OUT/runs``."""
    jobs: list[dict[str, Any]]
    train_seconds: dict[str, float]
    """Each job's seconds: kept or copied ones now, the pool's as its jobs finish."""
    resumed: list[str]
    reused: list[str]


@dataclass
class DemoCheck:
    """What ``check_demo`` found, before anything is written: the plan, the methods, and the
    finished runs ``--reuse`` could copy and ``--resume`` could keep, with their job times."""

    plan: DemoPlan
    methods: list[str]
    reusable: set[str]
    reusable_seconds: dict[str, float]
    resumable: set[str]
    resumable_seconds: dict[str, float]


def check_demo(args: DemoArgs) -> DemoCheck:
    """Check ``args`` (methods, counts, the ``--reuse`` and ``--resume`` folders' plans)
    without touching a file; ``ValueError`` names what is wrong."""
    plan = DemoPlan.quick(args.plan.task) if args.quick else replace(args.plan)
    if args.steps is not None:
        plan.steps = args.steps
    if args.samples is not None:
        plan.samples = args.samples
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad or not methods:
        raise ValueError(f"--methods has unknown entries {bad}; allowed: {', '.join(ALL_METHODS)}")
    if args.seeds < 1 or args.workers < 1:
        raise ValueError("--seeds and --workers must be >= 1")
    out = Path(args.out)
    if args.reuse is not None and Path(args.reuse).resolve() == out.resolve():
        raise ValueError("--reuse must name another folder than --out (--out's runs are replaced)")
    reusable, seconds = reusable_runs(Path(args.reuse), plan) if args.reuse else (set(), {})
    kept, kept_seconds = resumable_runs(out / "runs", plan) if args.resume else (set(), {})
    return DemoCheck(plan, methods, reusable, seconds, kept, kept_seconds)


def prepare_demo(args: DemoArgs, check: DemoCheck | None = None) -> DemoJobs:
    """Keep (``--resume``) or copy (``--reuse``) finished runs and list the jobs still to
    train; ``--out``'s other runs are deleted. ``check``: ``check_demo(args)``'s result, when
    the caller has it already."""
    check = check or check_demo(args)
    plan, methods = check.plan, check.methods
    root = Path(args.out) / "runs"
    if not args.resume:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / PLAN_FILE, json.loads(json.dumps(asdict(plan))))
    jobs = []
    for seed in range(args.seeds):
        for method in methods:
            if method in DERIVED:
                continue
            jobs.append(dict(method=method, seed=seed, root=str(root), plan=asdict(plan),
                             **{"with": methods}))  # fmt: skip
        if any(m in DERIVED for m in methods) and "rope" not in methods:
            jobs.append(dict(method="rope", seed=seed, root=str(root), plan=asdict(plan),
                             **{"with": methods}))  # fmt: skip
    train_seconds: dict[str, float] = {}
    resumed: list[str] = []
    if args.resume:
        for job in [j for j in jobs if set(job_runs(j)) <= check.resumable]:
            jobs.remove(job)
            resumed += job_runs(job)
            key = f"{job['method']}-s{job['seed']}"
            if key in check.resumable_seconds:
                train_seconds[key] = check.resumable_seconds[key]
        for name in {n for j in jobs for n in job_runs(j)}:  # a job's runs are trained together
            shutil.rmtree(root / name, ignore_errors=True)
        print(f"demo: kept {len(resumed)} finished runs in {root}", flush=True)
    reused: list[str] = []
    if args.reuse is not None:
        for job in [j for j in jobs if set(job_runs(j)) <= check.reusable]:
            jobs.remove(job)
            for name in job_runs(job):
                shutil.copytree(Path(args.reuse) / "runs" / name, root / name)
                reused.append(name)
            key = f"{job['method']}-s{job['seed']}"
            if key in check.reusable_seconds:
                train_seconds[key] = check.reusable_seconds[key]
        print(f"demo: reused {len(reused)} finished runs from {args.reuse}", flush=True)
    return DemoJobs(args, plan, methods, root, jobs, train_seconds, resumed, reused)


def train_jobs(demos: list[DemoJobs], workers: int) -> float:
    """Train every job of ``demos`` in one pool of ``workers`` processes; the wall seconds.

    Several demos (``benchmarks/reproduce.py``'s tasks) share the pool, so it idles only at
    the very end, not at the end of each demo. Jobs run longest first, so the last minutes are
    not one long job beside an idle worker; each job's result depends only on its own plan,
    method and seed, not on the order or on the other jobs.
    """
    from tqdm.auto import tqdm

    jobs = sorted((j for d in demos for j in d.jobs), key=job_cost, reverse=True)
    by_root = {str(d.root): d for d in demos}  # a job's and its result's "root"
    todo = {d.root: [n for j in d.jobs for n in job_runs(j)] for d in demos}  # runs to train
    total = sum(run_steps(d.plan, n.rsplit("-s", 1)[0]) for d in demos for n in todo[d.root])
    start = time.perf_counter()
    if jobs:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:

            def record(result: dict[str, Any]) -> None:  # the pool's one result thread
                demo = by_root[result["root"]]
                demo.train_seconds[result["method"]] = result["seconds"]
                atomic_write_json(demo.root / JOB_SECONDS_FILE, demo.train_seconds)

            pending = [pool.apply_async(run_job, (job,), callback=record) for job in jobs]
            with tqdm(total=total, desc="demo: training", unit="step", dynamic_ncols=True) as bar:
                while not all(p.ready() for p in pending):
                    time.sleep(2.0)
                    bar.n = min(total, sum(steps_done(r, n) for r, n in todo.items()))
                    bar.refresh()
            for p in pending:
                p.get()  # a worker's error is raised here
            # Let the workers exit on their own: the context manager's terminate() kills them,
            # which can leave their semaphores to the resource tracker (a warning at exit).
            pool.close()
            pool.join()
    return time.perf_counter() - start


def finish_demo(
    demo: DemoJobs, elapsed: float, pool_tasks: list[str] | None = None
) -> dict[str, Any]:
    """Summarise the trained runs, write ``results.json``, ``report.md`` and the plots.

    ``elapsed``: the wall seconds of the pool that trained them; ``pool_tasks``: the tasks
    whose runs shared that pool, when there were several."""
    args, plan, out = demo.args, demo.plan, Path(demo.args.out)
    summary = summarise(demo.root, demo.methods, args.seeds, plan)
    summary["job_seconds"] = demo.train_seconds
    summary["setup"] = {
        "task": plan.task, "task_options": plan.task_options, "plan": asdict(plan),
        "seeds": args.seeds,
        "methods": demo.methods, "wall_seconds": round(elapsed, 1), "quick": args.quick,
        "workers": args.workers,
        "reused_runs": {"from": str(args.reuse), "runs": sorted(demo.reused)}
        if demo.reused else None,
        "resumed_runs": sorted(demo.resumed) or None,
        "pool_tasks": pool_tasks if pool_tasks and len(pool_tasks) > 1 else None,
    }  # fmt: skip
    atomic_write_json(out / "results.json", summary)
    write_outputs(out, summary, plan)
    print(f"\nAccuracy (%) of greedy answers [95% interval], {plan.samples} samples per length"
          f" and seed, trained at L = {plan.length}:")  # fmt: skip
    print("\n".join(accuracy_table(summary, plan)))
    print(" ".join(interpretation(summary, args.seeds)))
    print(f"demo finished in {elapsed:.0f} s: {out / 'report.md'}")
    return summary


def run_demo(args: DemoArgs) -> dict[str, Any]:
    demo = prepare_demo(args)
    return finish_demo(demo, train_jobs([demo], args.workers))


def read_samples(folder: Path) -> list[dict[str, Any]]:
    path = folder / "eval" / "samples.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def needle_distance(row: dict[str, Any]) -> float | None:
    """Tokens from the asked value's needle to the end of the prompt (from the sample's needle
    spans; else from its depth), or None when the sample records neither."""
    values = [n for n in row.get("needles", []) if n.get("role") == "value"]
    if values and row.get("prompt_tokens") is not None:
        return float(row["prompt_tokens"] - values[0]["token_start"])
    depth = row.get("depth")
    return None if depth is None else (1.0 - float(depth)) * row["length"]


def summarise(root: Path, methods: list[str], seeds: int, plan: DemoPlan) -> dict[str, Any]:
    """Accuracy per method and length from the runs' ``eval/samples.jsonl`` files: pooled
    over seeds with a 95% interval, per seed, and split by needle distance (within the
    training length L of the question, or beyond it)."""
    summary: dict[str, Any] = {}
    table: dict[str, Any] = {}
    lengths = [plan.length * m for m in plan.length_multipliers]
    for method in methods:
        per_length: dict[str, Any] = {}
        for length in lengths:
            seed_acc, hits, n = [], 0.0, 0
            near = [0.0, 0]
            far = [0.0, 0]
            for seed in range(seeds):
                rows = [r for r in read_samples(root / f"{method}-s{seed}")
                        if r["length"] == length]  # fmt: skip
                if not rows:
                    continue
                scores = [float(r["score"]) for r in rows]
                seed_acc.append(sum(scores) / len(scores))
                hits += sum(scores)
                n += len(scores)
                for r in rows:
                    distance = needle_distance(r)
                    if distance is None:
                        continue
                    bucket = far if distance > plan.length else near
                    bucket[0] += float(r["score"])
                    bucket[1] += 1
            low, high = wilson(hits, n)
            per_length[str(length)] = {
                "accuracy": hits / n if n else None,
                "ci95": [low, high],
                "samples": n,
                "per_seed": seed_acc,
                "near_accuracy": near[0] / near[1] if near[1] else None,
                "near_samples": near[1],
                "far_accuracy": far[0] / far[1] if far[1] else None,
                "far_samples": far[1],
            }
        table[method] = per_length
    summary["accuracy"] = table
    summary["lengths"] = lengths
    summary["train_length"] = plan.length
    summary["chance"] = chance_levels(plan.task)
    return summary


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def interpretation(summary: dict[str, Any], seeds: int) -> list[str]:
    """Two sentences on what the table means, computed from the numbers (never canned)."""
    acc = summary["accuracy"]
    lengths = summary["lengths"]
    first, last = str(lengths[0]), str(lengths[-1])
    chance = summary["chance"]
    at_l = sorted(acc, key=lambda m: acc[m][first]["accuracy"] or 0.0, reverse=True)
    at_far = sorted(acc, key=lambda m: acc[m][last]["accuracy"] or 0.0, reverse=True)
    best, worst = at_l[0], at_l[-1]
    sentence1 = (
        f"At the training length L = {lengths[0]}, {best} answers {pct(acc[best][first]['accuracy'])}% "
        f"and {worst} {pct(acc[worst][first]['accuracy'])}% of questions (chance: "
        f"{pct(chance['uniform_value'])}% for a random value, {pct(chance['copy_any_needle'])}% "
        f"for copying some needle's value); at {lengths[-1] // lengths[0]}L = {lengths[-1]} the "
        f"best is {at_far[0]} with "
        f"{pct(acc[at_far[0]][last]['accuracy'])}%."
    )
    # Are the top two methods separable?
    top, second = at_l[0], at_l[1] if len(at_l) > 1 else at_l[0]
    lo_top = acc[top][first]["ci95"][0]
    hi_second = acc[second][first]["ci95"][1]
    seed_note = ""
    if seeds == 1:
        seed_note = (
            " With one seed per method the seed-to-seed variation is not measured (it is large "
            "for tiny models); run `longpos demo --seeds 3` before drawing conclusions."
        )
    else:
        spreads = [
            max(v["per_seed"]) - min(v["per_seed"])
            for m in acc for v in acc[m].values() if len(v["per_seed"]) > 1
        ]  # fmt: skip
        gap = (acc[top][first]["accuracy"] or 0) - (acc[second][first]["accuracy"] or 0)
        noise = max(spreads) if spreads else 0.0
        seed_note = (
            f" Across {seeds} seeds the largest seed spread is {pct(noise)} points against a "
            f"gap of {pct(gap)} points between {top} and {second} at L: "
            + ("the gap is within seed noise." if gap <= noise else "the gap exceeds it.")
        )
    copy = chance["copy_any_needle"]
    if acc[top][first]["ci95"][0] <= copy:
        sentence2 = (
            f"No model is reliably above the {pct(copy)}% that copying some needle's value "
            "gives, so at this budget the models learned where values sit but not which key "
            f"they belong to; compare methods on learning curves, not on this table.{seed_note}"
        )
    elif lo_top <= hi_second:
        sentence2 = (
            f"The 95% intervals of {top} and {second} overlap at L, so this run does not "
            f"separate them.{seed_note}"
        )
    else:
        sentence2 = f"At L, {top}'s 95% interval lies above {second}'s.{seed_note}"
    return [sentence1, sentence2]


def accuracy_table(summary: dict[str, Any], plan: DemoPlan) -> list[str]:
    """The report's Markdown table: accuracy % [95% interval] per method and length."""
    lengths = summary["lengths"]
    head = "| method | " + " | ".join(f"{n} ({n // plan.length}L)" for n in lengths) + " |"
    lines = [head, "|---" * (len(lengths) + 1) + "|"]
    for method, row in summary["accuracy"].items():
        cells = []
        for n in lengths:
            cell = row[str(n)]
            lo, hi = cell["ci95"]
            cells.append(f"{pct(cell['accuracy'])} [{pct(lo)}, {pct(hi)}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def write_outputs(out: Path, summary: dict[str, Any], plan: DemoPlan) -> None:
    from longpos.viz.plots import plot_accuracy_vs_length

    acc = summary["accuracy"]
    lengths = summary["lengths"]
    seeds = summary["setup"]["seeds"]
    lines = accuracy_table(summary, plan)
    far_lines = ["| method | " + " | ".join(f"{n}: near / far" for n in lengths[1:]) + " |",
                 "|---" * len(lengths) + "|"]  # fmt: skip
    for method, row in acc.items():
        cells = [
            f"{pct(row[str(n)]['near_accuracy'])} ({row[str(n)]['near_samples']}) / "
            f"{pct(row[str(n)]['far_accuracy'])} ({row[str(n)]['far_samples']})"
            for n in lengths[1:]
        ]
        far_lines.append(f"| {method} | " + " | ".join(cells) + " |")
    setup = summary["setup"]
    text = "\n".join(
        [
            f"# longpos demo: {TASK_TITLES[plan.task]}, tiny models on a CPU",
            "",
            " ".join(interpretation(summary, seeds)),
            "",
            f"Accuracy (%) of greedy answers, {plan.samples} fresh samples per length and seed,"
            f" pooled over {seeds} seed(s), with 95% Wilson intervals:",
            "",
            *lines,
            "",
            f"By needle distance from the question (near: within L = {plan.length} tokens; far:"
            " beyond what any model saw in training); accuracy % (samples):",
            "",
            *far_lines,
            "",
            "## Setup",
            "",
            f"- Task: token-level `{plan.task}` with options"
            f" `{json.dumps(plan.task_options)}` ({TASK_DESCRIPTIONS[plan.task]}).",
            f"- Models: {plan.n_layers} layers, width {plan.d_model}, {plan.n_heads} heads;"
            " RoPE, NoPE, R2N1 (NoPE in layer 2), RePo (RoPE in layer 0, RePo above), DroPE"
            f" (the RoPE run dropped at {plan.drop_fraction:.1%} of its steps and recalibrated"
            " at L for the rest); repo_cpt, when run: the RoPE run's snapshot at"
            f" {plan.cpt_fraction:.0%} of its steps with RePo layers added, trained for the rest.",
            f"- Budget per method: {plan.steps} steps x {plan.batch_size} sequences of"
            f" {plan.length} tokens, AdamW lr {plan.lr}, cosine; {wall_time(setup)}"
            f" in total with {setup['workers']} worker process(es).",
            "- Files: `results.json` (all numbers), `accuracy_vs_length.png`,"
            " `learning_curves.png`, `positions.html`"
            " (RePo's positions on an evaluation sample), `runs/` (training metrics, models,"
            " per-sample predictions).",
            "",
        ]
    )
    atomic_write_text(out / "report.md", text)
    curves = {
        m: {n: 100 * (row[str(n)]["accuracy"] or 0.0) for n in lengths} for m, row in acc.items()
    }
    plot_accuracy_vs_length(
        curves, out / "accuracy_vs_length.png", TASK_TITLES[plan.task],
        train_length=plan.length,
    )  # fmt: skip
    write_learning_curves(out, list(acc), {m: derived_step(plan, m) for m in DERIVED})
    write_positions_page(out, plan)


def write_learning_curves(out: Path, methods: list[str], starts: dict[str, int]) -> None:
    """Training answer accuracy (teacher-forced, dense questions) against step, seed 0."""
    from longpos.viz.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method in methods:
        path = out / "runs" / f"{method}-s0" / "metrics.jsonl"
        if not path.exists():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        pts = [(r["step"], 100 * r["answer_acc"]) for r in rows if "answer_acc" in r]
        offset = starts.get(method, 0)  # a derived run follows its RoPE snapshot
        ax.plot([p[0] + offset for p in pts], [p[1] for p in pts], label=method)
    ax.set_xlabel("training step")
    ax.set_ylabel("answer accuracy, training batches (%)")
    ax.set_title("learning curves (later dense questions: by elimination)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out / "learning_curves.png")


def write_positions_page(out: Path, plan: DemoPlan) -> None:
    """The RePo model's assigned positions on one evaluation sample at 2L."""
    from longpos.checkpoint import load_model
    from longpos.tasks.base import generate_sample
    from longpos.viz.positions import sample_marks, sample_tokens_text, write_position_viewer

    folder = out / "runs" / "repo-s0" / "model"
    if not folder.exists():
        return
    sample = generate_sample(plan.task, 2 * plan.length, seed=7, **plan.task_options)
    write_position_viewer(
        load_model(folder), sample.prompt_ids, out / "positions.html",
        tokens_text=sample_tokens_text(sample), marks=sample_marks(sample),
        title="RePo positions (demo model)",
        subtitle=f"{plan.task}, length {2 * plan.length} (2x training length)",
    )  # fmt: skip
