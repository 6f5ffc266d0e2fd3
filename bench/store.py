"""The run store: every run recorded in SQLite, keyed by commit, experiment, config hash and seed.

Default location: the user data directory (platformdirs), overridden by `--store PATH` or the
environment variable DLC_BENCH_STORE. It is the basis of tracking metrics across commits.
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    experiment   TEXT NOT NULL,
    preset       TEXT,
    config_hash  TEXT NOT NULL,
    git_commit   TEXT,
    git_dirty    INTEGER,
    seeds        TEXT NOT NULL,
    out_dir      TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    wall_s       REAL,
    status       TEXT NOT NULL,
    results_json TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id           TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    metric           TEXT NOT NULL,
    value            REAL,
    ci_low           REAL,
    ci_high          REAL,
    n                INTEGER,
    higher_is_better INTEGER,
    seed             INTEGER,
    labels           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (git_commit, experiment, config_hash);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics (run_id, metric, seed);
"""


def default_store_path() -> Path:
    env = os.environ.get("DLC_BENCH_STORE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("dlc-bench")) / "runs.sqlite"


class RunStore:
    """A thin wrapper over one SQLite file. Each write is one transaction."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as con, con:
                con.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise UserError(f"cannot open the run store {self.path}: {e}",
                            hint="choose a writable file with --store PATH or DLC_BENCH_STORE") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA foreign_keys = ON")
        return con

    def record(self, results: Mapping[str, Any], out_dir: str | None, status: str = "complete") -> None:
        git = results.get("git") or {}
        rows = []
        for m in results.get("metrics", []):
            labels = {k: v for k, v in m.items()
                      if k not in ("metric", "value", "ci_low", "ci_high", "n", "higher_is_better", "seed")}
            hib = m.get("higher_is_better")
            rows.append((results["run_id"], m["metric"], m.get("value"), m.get("ci_low"), m.get("ci_high"),
                         m.get("n"), None if hib is None else int(bool(hib)), m.get("seed"),
                         json.dumps(labels, sort_keys=True)))
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (results["run_id"],))
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (results["run_id"], results["experiment"], results.get("preset"), results["config_hash"],
                 git.get("commit"), None if git.get("dirty") is None else int(git["dirty"]),
                 json.dumps(list(results.get("seeds", []))), out_dir, results.get("started_at"),
                 results.get("finished_at"), (results.get("timings") or {}).get("total"), status,
                 json.dumps(results, default=str)))
            con.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def runs(self, experiment: str | None = None, commit: str | None = None, limit: int = 50) -> list[dict]:
        q = ("SELECT run_id, experiment, preset, config_hash, git_commit, git_dirty, seeds, out_dir, "
             "finished_at, wall_s, status FROM runs")
        where, args = [], []
        if experiment:
            where.append("experiment = ?")
            args.append(experiment)
        if commit:
            where.append("git_commit LIKE ?")
            args.append(commit + "%")
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY finished_at DESC LIMIT ?"
        args.append(limit)
        with closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(q, args)]

    def metrics(self, run_id: str) -> list[dict]:
        with closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            out = []
            for r in con.execute("SELECT * FROM metrics WHERE run_id = ?", (run_id,)):
                d = dict(r)
                d.update(json.loads(d.pop("labels")))
                out.append(d)
            return out

    def history(self, experiment: str, metric: str, config_hash: str | None = None) -> list[dict]:
        """One metric across recorded runs (oldest first): the view for tracking across commits."""
        q = ("SELECT r.run_id, r.git_commit, r.git_dirty, r.config_hash, r.finished_at, m.value, m.ci_low, "
             "m.ci_high, m.n, m.seed, m.labels FROM metrics m JOIN runs r USING (run_id) "
             "WHERE r.experiment = ? AND m.metric = ?")
        args: list[Any] = [experiment, metric]
        if config_hash:
            q += " AND r.config_hash = ?"
            args.append(config_hash)
        q += " ORDER BY r.finished_at"
        with closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            rows = []
            for r in con.execute(q, args):
                d = dict(r)
                d.update(json.loads(d.pop("labels")))
                rows.append(d)
            return rows
