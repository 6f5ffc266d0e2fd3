"""The run store: every run recorded in SQLite, keyed by commit, experiment, config hash and seed.

Default location: the user data directory (platformdirs), overridden by `--store PATH` or the
environment variable DLC_BENCH_STORE. It is the basis of tracking metrics across commits.

Opening a store writes nothing: it checks that an existing file is a run store (SQLite) and that a missing one
could be created, and raises a one-line UserError otherwise. The file (and its folder) is created by the first
`record`; reading a store that does not exist yet gives no rows, so `runs` / `history` never create one.
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

    def __init__(self, path: str | os.PathLike | None = None, writable: bool = True):
        """Check the store at `path` (default: `default_store_path()`) without writing: an existing file must be
        SQLite, and with `writable` (a run that will record) the file, or the folder it will be created in,
        must be writable. UserError otherwise."""
        self.path = Path(path).expanduser() if path else default_store_path()
        hint = "choose a writable file with --store PATH or DLC_BENCH_STORE"
        if self.path.is_dir():
            raise UserError(f"the run store {self.path} is a directory", hint=hint)
        if self.path.exists():
            try:
                with closing(self._connect(read_only=True)) as con:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as e:
                raise UserError(f"{self.path} is not a dlc-bench run store (SQLite: {e})", hint=hint) from None
            if writable and not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)):
                raise UserError(f"the run store {self.path} is not writable", hint=hint)
            return
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if writable and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
            raise UserError(f"cannot create the run store {self.path} ({parent} is not a writable directory)",
                            hint=hint)

    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        if read_only:
            con = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30)
            con.executescript(SCHEMA)
        con.execute("PRAGMA foreign_keys = ON")
        return con

    def _read(self, query: str, args: list | tuple = ()) -> list[dict]:
        """Rows of a query as dicts; none when the store does not exist yet (or has no tables)."""
        if not self.path.exists():
            return []
        try:
            with closing(self._connect(read_only=True)) as con:
                con.row_factory = sqlite3.Row
                return [dict(r) for r in con.execute(query, args)]
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise UserError(f"cannot read the run store {self.path}: {e}",
                            hint="choose another file with --store PATH or DLC_BENCH_STORE") from None

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
        try:
            self._write(results, out_dir, status, git, rows)
        except (OSError, sqlite3.Error) as e:
            raise UserError(f"cannot write the run store {self.path}: {e}",
                            hint="choose a writable file with --store PATH or DLC_BENCH_STORE") from None

    def _write(self, results: Mapping[str, Any], out_dir: str | None, status: str, git: Mapping, rows: list) -> None:
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
        return self._read(q, args)

    def last_run(self, experiment: str, preset: str | None) -> dict | None:
        """The newest complete recorded run of `experiment` with `preset`, with its results record ('results');
        None when there is none or the store cannot be read (the estimates made from it are then left out)."""
        try:
            rows = [r for r in self.runs(experiment=experiment, limit=200)
                    if r["preset"] == preset and r["status"] == "complete"]
            found = self.find(rows[0]["run_id"]) if rows else []
            results = json.loads(found[0]["results_json"]) if found else None
        except Exception:            # an unreadable store gives no estimate, not an error
            return None
        return {**rows[0], "results": results} if isinstance(results, dict) else None

    def run(self, run_id: str) -> dict | None:
        """The recorded row of `run_id` (with its out_dir), or None."""
        rows = self._read("SELECT run_id, experiment, preset, config_hash, out_dir, finished_at, status FROM runs "
                          "WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def find(self, run_id: str) -> list[dict]:
        """Recorded runs whose id is `run_id` or starts with it (with their results record), newest first."""
        exact = self._read("SELECT run_id, experiment, out_dir, results_json FROM runs WHERE run_id = ?", (run_id,))
        if exact:
            return exact
        return self._read("SELECT run_id, experiment, out_dir, results_json FROM runs WHERE substr(run_id, 1, ?) = ? "
                          "ORDER BY finished_at DESC", (len(run_id), run_id))

    def run_ids(self, limit: int = 1000) -> list[str]:
        return [r["run_id"] for r in self._read("SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT ?", (limit,))]

    def config_hashes(self, experiment: str) -> list[str]:
        """The config hashes of the recorded runs of `experiment`."""
        return [r["config_hash"] for r in self._read("SELECT DISTINCT config_hash FROM runs WHERE experiment = ? "
                                                     "ORDER BY config_hash", (experiment,))]

    def experiments(self) -> list[str]:
        """Names of the experiments with recorded runs."""
        return [r["experiment"] for r in self._read("SELECT DISTINCT experiment FROM runs ORDER BY experiment")]

    def metric_names(self, experiment: str) -> list[str]:
        """Names of the metrics recorded for `experiment`."""
        return [r["metric"] for r in self._read("SELECT DISTINCT m.metric FROM metrics m JOIN runs r USING (run_id) "
                                                "WHERE r.experiment = ? ORDER BY m.metric", (experiment,))]

    def metrics(self, run_id: str) -> list[dict]:
        out = []
        for d in self._read("SELECT * FROM metrics WHERE run_id = ?", (run_id,)):
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
        rows = []
        for d in self._read(q, args):
            d.update(json.loads(d.pop("labels")))
            rows.append(d)
        return rows


def format_duration(seconds: float) -> str:
    """'23 min 0 s', '42 s'."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def recorded_seconds_from(stages: list[dict], desc: str, point: dict | None = None, start: int = 0
                          ) -> tuple[int, float] | None:
    """(index, seconds) of the stage `desc` (at sweep point `point`) in a recorded run's `stages`, looked for from
    index `start` on, and the seconds that run spent in it and in every stage after it; None if it had none."""
    at = next((i for i in range(start, len(stages)) if stages[i].get("desc") == desc
               and (stages[i].get("point") or None) == (point or None)), None)
    return None if at is None else (at, sum(s.get("seconds", 0) for s in stages[at:]))
