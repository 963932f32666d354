"""`genir bench JOB.toml`: batch evaluation jobs (datasets x configs x splits x modes), resumable, one result
file per cell with its provenance, a summary, and a check against expected scores; local or on Ray.

    job.py     the job file: parsing and checks (all before any work)
    cells.py   the steps (embed, build, evaluate one cell), each runnable here or as a Ray task
    runner.py  planning, backends, summary, check
"""
from genir.bench.job import Job, load_job
from genir.bench.runner import BACKENDS, Outcome, plan, run_job

__all__ = ["BACKENDS", "Job", "Outcome", "load_job", "plan", "run_job"]
