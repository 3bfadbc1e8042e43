"""Every source into a real PostgreSQL server on 127.0.0.1 (``postgres_server``), from its emulator
over HTTPS: exact contents (the vendors' own truth comparisons), merge on re-runs after changes,
incremental state restored from the destination on a machine without the local pipeline folder,
and the column types PostgreSQL is given. The CLI's ``--destination postgres`` is run once too.

Arrow pages are loaded as ``insert_values`` (see LOADER_FILE_FORMAT)."""

from __future__ import annotations

import importlib
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dlt
import pyarrow as pa
import pytest
from dlt.common.versioned_state import decompress_state

from emulators.personyze.grammar import parse_path
from sources.lytics import settings as LS
from sources.lytics import user_table
from sources.personyze import settings as PS
from sources.posthog import settings as HS
from sources.posthog.sessions import SESSIONS
from tests.lytics import truth as lytics_truth
from tests.personyze import truth as personyze_truth
from tests.posthog import truth as posthog_truth
from tests.support import cdp_sync, cli_env
from tests.synerise import truth as synerise_truth

from .pgtruth import PgConnection

#: Arrow pages go to PostgreSQL as INSERT statements: dlt's default for Arrow there (csv through
#: COPY ... FORCE_NULL) turns every empty string into NULL (test_csv_copy_turns_empty_strings_into_null)
LOADER_FILE_FORMAT = "insert_values"


def run(pipeline: dlt.Pipeline, source: Any) -> dict[str, int]:
    info = pipeline.run(source, loader_file_format=LOADER_FILE_FORMAT)
    info.raise_on_failed_jobs()
    return {k: v for k, v in pipeline.last_trace.last_normalize_info.row_counts.items() if not k.startswith("_dlt")}


def resources_state(pipeline: dlt.Pipeline, vendor: str) -> dict[str, Any]:
    return pipeline.state.get("sources", {}).get(vendor, {}).get("resources", {})


# -- one case per vendor: what to load, how to compare, what to change ----------------------------


class Case:
    """A vendor's main resources at a small scale. A fresh instance per test (it may remember
    what an earlier step of the test saw)."""

    vendor: str
    scale: int
    seed: int
    resources: tuple[str, ...]
    #: table -> primary key, for the duplicate check
    keys: dict[str, tuple[str, ...]]
    #: (table, column) -> information_schema.columns.data_type
    types: dict[tuple[str, str], str]
    #: (table, column) of JSON columns that must hold objects or arrays, not JSON-encoded text
    json_columns: tuple[tuple[str, str], ...]

    def source(self, server: Any, ctl: Any) -> Any:
        module = importlib.import_module(f"sources.{self.vendor}")
        src = getattr(module, f"{self.vendor}_source")(api_key=server.api_key, base_url=server.base_url,
                                                       **self.options(ctl))
        return src.with_resources(*self.resources)

    def options(self, ctl: Any) -> dict[str, Any]:
        return {}

    def after_first_run(self, pipeline: dlt.Pipeline) -> None:
        pass

    def assert_equals_emulator(self, con: PgConnection, dataset: str, ctl: Any, pipeline: dlt.Pipeline) -> None:
        raise NotImplementedError

    def change(self, ctl: Any) -> dict[str, tuple[int, set[Any]]]:
        """Changes made through the emulator; returns table -> (rows the next run must load,
        primary keys of rows that existed and changed)."""
        raise NotImplementedError

    def small_change(self, ctl: Any) -> tuple[str, int]:
        """A change after which an incremental run loads exactly ``n`` rows of ``table``
        (a backfill, or a run that lost its cursor, would load far more)."""
        raise NotImplementedError

    def assert_incremental_requests(self, log: list[dict[str, Any]]) -> None:
        """The request log of the run after ``small_change`` is an incremental one."""
        raise NotImplementedError


class Personyze(Case):
    vendor, scale, seed = "personyze", 600, 7
    resources = ("users", "events", "sessions_archive", "summary_actions", "products")
    specs = (PS.USERS, PS.EVENTS, PS.SESSIONS_ARCHIVE, PS.SUMMARY_ACTIONS, PS.PRODUCTS)
    keys = {s.name: s.primary_key for s in specs}
    types = {
        ("users", "data_last_modified"): "timestamp with time zone",
        ("users", "birthday"): "timestamp with time zone",
        ("users", "session_counter"): "bigint",
        ("users", "custom_f_1"): "double precision",
        ("users", "attributes"): "jsonb",
        ("events", "time"): "timestamp with time zone",
        ("summary_actions", "impressions"): "bigint",
    }
    json_columns = (("users", "attributes"),)

    def options(self, ctl: Any) -> dict[str, Any]:
        return {"backfill_workers": 2}

    def assert_equals_emulator(self, con, dataset, ctl, pipeline):
        for spec in self.specs:
            personyze_truth.assert_table_equals(con, dataset, spec, ctl.export(spec.name))

    def change(self, ctl):
        ctl.mutate({"op": "advance_clock", "seconds": 5})
        users = set(ctl.mutate({"op": "modify_users", "count": 40})["user_ids"])
        added = ctl.mutate({"op": "add_users", "count": 5})["user_ids"]
        ctl.mutate({"op": "add_sessions", "count": 6, "late_seconds": 60})  # inside the 300 s lookback
        ctl.mutate({"op": "add_events", "count": 8})
        return {"users": (len(users) + len(added), users), "sessions_archive": (6, set()), "events": (8, set())}

    def small_change(self, ctl):
        ctl.mutate({"op": "advance_clock", "seconds": 5})
        return "users", len(ctl.mutate({"op": "modify_users", "count": 7})["user_ids"])

    def assert_incremental_requests(self, log):
        users = [parse_path(e["raw_path"][len("/rest/"):]) for e in log if e["raw_path"].startswith("/rest/users")]
        assert 1 <= len(users) <= 2, f"{len(users)} users requests: not an incremental run"
        # a backfill splits the id space into ranges (user_id <= N): none of those
        assert not any(c.op == "<=" for q in users for branch in (q.where or []) for c in branch)


class Synerise(Case):
    vendor, scale, seed = "synerise", 300, 7
    resources = ("profiles", "events", "catalogs", "catalog_items")
    keys = {"profiles": ("client_id",), "events": ("event_uuid",), "catalogs": ("id",),
            "catalog_items": ("catalog_id", "item_key")}
    types = {
        ("profiles", "last_activity_date"): "timestamp with time zone",
        ("profiles", "attributes"): "jsonb",
        ("profiles", "client_id"): "bigint",
        ("events", "time"): "timestamp with time zone",
        ("catalog_items", "value"): "jsonb",
    }
    json_columns = (("profiles", "attributes"), ("catalog_items", "value"))
    first_from: int | None = None

    def after_first_run(self, pipeline):
        self.first_from = resources_state(pipeline, "synerise")["events"]["last_run"]["window_from"]

    def assert_equals_emulator(self, con, dataset, ctl, pipeline):
        for table in ("profiles", "catalogs", "catalog_items"):
            synerise_truth.assert_table_equals(con, dataset, table, ctl.export(table))
        # every event of the windows read so far: from the first run's start to the last run's end
        hi = resources_state(pipeline, "synerise")["events"]["last_run"]["window_to"]
        events = [e for e in ctl.export("events") if self.first_from <= e["time"] <= hi]
        assert events
        synerise_truth.assert_table_equals(con, dataset, "events", events)

    def change(self, ctl):
        modified = set(ctl.mutate({"op": "modify_profiles", "count": 15})["client_ids"])
        ctl.mutate({"op": "add_profiles", "count": 4})
        merged = {m["merged"] for m in ctl.mutate({"op": "merge_profiles", "count": 2})["merges"]}
        ctl.mutate({"op": "modify_items", "count": 4})
        ctl.mutate({"op": "delete_items", "count": 2})
        events = ctl.mutate({"op": "add_events", "count": 30, "ago_ms": 0, "spread_ms": 30_000})["uuids"]
        ctl.mutate({"op": "advance_clock", "seconds": 120})  # past the 60 s safety lag
        # profiles are a full snapshot (every row loaded again); merged-away ones are hard-deleted
        return {"events": (len(events), set()), "profiles": (-1, modified - merged)}

    def small_change(self, ctl):
        # late events inside the 10-minute re-read window behind the restored cursor
        n = len(ctl.mutate({"op": "add_events", "count": 9, "ago_ms": 3 * 60_000, "spread_ms": 30_000})["uuids"])
        return "events", n

    def assert_incremental_requests(self, log):
        windows = [e for e in log if e["path"] == "/activities-api/activities"]
        # the first run reads the 6-hour horizon in hourly pieces; a resumed run one short window
        assert len(windows) == 1, f"{len(windows)} activity requests: not an incremental run"
        q = {k: v[0] for k, v in parse_qs(windows[0]["query"]).items()}
        assert int(q["dateTo"]) - int(q["dateFrom"]) < 3600_000


class Lytics(Case):
    vendor, scale, seed = "lytics", 400, 7
    resources = ("users", "segments", "content_documents")
    keys = {"users": ("_uid",), "segments": ("id",), "content_documents": ("id",)}
    types = {
        ("users", "_modified"): "timestamp with time zone",
        ("users", "score_intensity"): "bigint",
        ("users", "ltv"): "double precision",
        ("users", "attributes"): "jsonb",
    }
    json_columns = (("users", "attributes"),)

    def assert_equals_emulator(self, con, dataset, ctl, pipeline):
        schema_rows = ctl.export("schema_fields")
        table, _ = user_table({"columns": [r for r in schema_rows if r["table"] == "user"]}, "_uid", None,
                              LS.DEFAULT_MAX_USER_COLUMNS)
        lytics_truth.assert_table_equals(con, dataset, "users", table.columns, ("_uid",), ctl.export("users"),
                                         lytics_truth.schema_kinds(schema_rows))
        for spec in (LS.SEGMENTS, LS.CONTENT_DOCUMENTS):
            lytics_truth.assert_table_equals(con, dataset, spec.name, spec.columns, spec.primary_key,
                                             ctl.export(spec.name))

    def change(self, ctl):
        modified = set(ctl.mutate({"op": "modify_users", "count": 25})["uids"])
        added = ctl.mutate({"op": "add_users", "count": 3})["uids"]
        segment = ctl.export("segments")[0]["id"]
        ctl.mutate({"op": "update_segment", "id": segment, "description": "changed for the warehouse"})
        docs = ctl.mutate({"op": "update_content", "count": 3})["ids"]
        return {"users": (len(modified) + len(added), modified), "segments": (1, {segment}),
                "content_documents": (len(docs), set(docs))}

    def small_change(self, ctl):
        return "users", len(ctl.mutate({"op": "modify_users", "count": 6})["uids"])

    def assert_incremental_requests(self, log):
        scans = [e for e in log if "/scan" in e["path"] and "FROM user" in (e["body"] or "")]
        assert len(scans) == 1, f"{len(scans)} user scans: not an incremental run"
        assert '_modified > "' in scans[0]["body"]


class PostHog(Case):
    vendor, scale, seed = "posthog", 300, 11
    #: the REST lists of issue 14 (declared in sources/posthog/lists.py)
    lists = (HS.EXPERIMENTS, HS.ACTIONS, HS.DASHBOARDS, HS.SURVEYS, HS.SESSION_RECORDINGS)
    resources = ("events", "event_summaries", "persons", *(s.name for s in lists), "sessions")
    keys = {"events": HS.EVENTS.primary_key, "event_summaries": HS.EVENT_SUMMARIES.primary_key,
            "persons": HS.PERSONS.primary_key, "sessions": SESSIONS.primary_key,
            **{s.name: s.primary_key for s in lists}}
    types = {
        ("events", "timestamp"): "timestamp with time zone",
        ("events", "properties"): "jsonb",
        ("event_summaries", "day"): "date",
        ("event_summaries", "events"): "bigint",
        ("persons", "created_at"): "timestamp with time zone",
        ("persons", "is_identified"): "boolean",
        ("sessions", "start_timestamp"): "timestamp with time zone",
        ("sessions", "pageview_count"): "bigint",
        ("sessions", "is_bounce"): "boolean",
        ("experiments", "metrics"): "jsonb",
        ("experiments", "start_date"): "timestamp with time zone",
        ("dashboards", "tiles"): "jsonb",
        ("surveys", "id"): "character varying",
        ("session_recordings", "start_time"): "timestamp with time zone",
        ("session_recordings", "recording_duration"): "bigint",
    }
    json_columns = (("events", "properties"), ("persons", "properties"), ("experiments", "metrics"),
                    ("actions", "steps"), ("dashboards", "tiles"), ("surveys", "questions"),
                    ("session_recordings", "person"))

    def assert_equals_emulator(self, con, dataset, ctl, pipeline):
        posthog_truth.assert_table_equals(con, dataset, SESSIONS, ctl.export("sessions"))
        posthog_truth.assert_matches_emulator(con, dataset, ctl, "events", "event_summaries", "persons")
        for spec in self.lists:
            posthog_truth.assert_table_equals(con, dataset, spec, ctl.export(spec.name))

    def change(self, ctl):
        persons = set(ctl.mutate({"op": "modify_persons", "count": 9})["uuids"])
        ctl.mutate({"op": "add_persons", "count": 4})
        events = ctl.mutate({"op": "add_events", "count": 20, "late_seconds": 120})["uuids"]
        experiments = set(ctl.mutate({"op": "modify_objects", "table": "experiments", "count": 2})["ids"])
        recordings = ctl.mutate({"op": "add_recordings", "count": 3, "late_seconds": 900})["ids"]
        grown = self.grow_a_session(ctl)
        # two sessions: the one the late events make, and the one that grew (by one event)
        return {"sessions": (2, {grown}), "persons": (-1, persons), "events": (len(events) + 1, set()),
                "experiments": (-1, experiments), "session_recordings": (len(recordings), set())}

    def grow_a_session(self, ctl):
        """One more event now in the session of the newest generated event (it ended minutes ago)."""
        import datetime as _dt

        newest = max((e for e in ctl.export("events") if not e["session_id"].startswith("late-")),
                     key=lambda e: _dt.datetime.fromisoformat(e["timestamp"]))
        ctl.mutate({"op": "grow_session", "project_id": newest["project_id"], "session_id": newest["session_id"]})
        return (newest["project_id"], newest["session_id"])

    def small_change(self, ctl):
        return "events", len(ctl.mutate({"op": "add_events", "count": 6, "late_seconds": 60})["uuids"])

    def assert_incremental_requests(self, log):
        queries = [(e["path"], json.loads(e["body"])["name"]) for e in log
                   if e["method"] == "POST" and e["path"].endswith("/query/") and e.get("body")]
        # a first run (no cursor) asks each project for its event bounds; a resumed run does not
        assert not [q for q in queries if q[1] == "cdp_sync_event_bounds"], "not an incremental run"
        # and reads one window behind the cursor per project (two across midnight), not days of them
        windows = Counter(path for path, name in queries if name == "cdp_sync_events")
        assert windows and max(windows.values()) <= 2, windows


CASES = [Personyze, Synerise, Lytics, PostHog]


@pytest.fixture(params=CASES, ids=lambda c: c.vendor)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param()


@pytest.fixture
def emu(case: Case, start_emulator: Any) -> Any:
    return start_emulator(case.vendor, scale=case.scale, seed=case.seed)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


@pytest.fixture
def pg(postgres_server: Any) -> Any:
    with PgConnection(postgres_server.loader_dsn()) as con:
        yield con


def assert_no_duplicate_keys(pg: PgConnection, dataset: str, case: Case) -> None:
    for table, key in case.keys.items():
        dupes = pg.duplicate_keys(dataset, table, key)
        assert not dupes, f"{case.vendor}.{table}: duplicate primary keys {dupes}"


# -- the tests --------------------------------------------------------------------------------


def test_load_types_and_merge_after_changes(case, emu, ctl, pg, postgres_url, dataset_name, destination_pipeline):
    pipeline = destination_pipeline(dlt.destinations.postgres(postgres_url), dataset_name)
    first = run(pipeline, case.source(emu, ctl))
    case.after_first_run(pipeline)
    assert set(case.keys) <= set(first), first
    case.assert_equals_emulator(pg, dataset_name, ctl, pipeline)

    # types: timestamps with time zone, JSON as jsonb holding objects, numbers as numbers
    for (table, column), want in case.types.items():
        got = pg.column_types(dataset_name, table).get(column)
        assert got == want, f"{case.vendor}.{table}.{column}: {got}, expected {want}"
    naive = pg.execute("select table_name, column_name from information_schema.columns where table_schema = %s "
                       "and data_type = 'timestamp without time zone'", [dataset_name]).fetchall()
    assert not naive, f"timestamps without a time zone: {naive}"
    for table, column in case.json_columns:
        kinds = dict(pg.execute(f'select jsonb_typeof("{column}"), count(*) from "{dataset_name}"."{table}" '
                                f'where "{column}" is not null group by 1').fetchall())
        assert kinds and set(kinds) <= {"object", "array"}, f"{table}.{column} holds {kinds}"

    changes = case.change(ctl)
    second = run(pipeline, case.source(emu, ctl))
    for table, (n, _) in changes.items():
        if n >= 0:
            assert second.get(table, 0) == n, f"{table}: {second.get(table, 0)} rows loaded, expected {n}"
    assert_no_duplicate_keys(pg, dataset_name, case)
    # the changed rows hold the new values and nothing else moved: the whole table equals the emulator
    case.assert_equals_emulator(pg, dataset_name, ctl, pipeline)
    for table, (_, changed) in changes.items():
        if changed:
            keys = case.keys[table]
            loaded = {tuple(r) for r in pg.execute(
                f'select {", ".join(chr(34) + k + chr(34) for k in keys)} from "{dataset_name}"."{table}" '
                f"where _dlt_load_id = (select max(_dlt_load_id) from \"{dataset_name}\".\"{table}\")").fetchall()}
            assert {k if isinstance(k, tuple) else (k,) for k in changed} <= loaded, (
                f"{table}: the changed rows were not loaded by the second run")


def test_state_is_restored_from_postgres_when_the_pipeline_folder_is_gone(
        case, emu, ctl, pg, postgres_url, dataset_name, destination_pipeline):
    pipeline = destination_pipeline(dlt.destinations.postgres(postgres_url), dataset_name, name=f"{case.vendor}_sched")
    run(pipeline, case.source(emu, ctl))
    case.after_first_run(pipeline)
    stored = resources_state(pipeline, case.vendor)
    assert stored, "the first run kept no state"

    # another machine (or an ephemeral runner): the same pipeline name and dataset, no local folder
    fresh = destination_pipeline(dlt.destinations.postgres(postgres_url), dataset_name, name=f"{case.vendor}_sched",
                                 pipelines_dir="another_machine")
    assert not resources_state(fresh, case.vendor), "the new folder must start empty"
    fresh.sync_destination()
    assert resources_state(fresh, case.vendor) == stored, "the state in _dlt_pipeline_state was not restored"

    table, n = case.small_change(ctl)
    ctl.clear_requests()
    counts = run(fresh, case.source(emu, ctl))
    case.assert_incremental_requests(ctl.requests())
    assert counts.get(table, 0) == n, f"{table}: {counts.get(table, 0)} rows loaded, an incremental run loads {n}"
    assert_no_duplicate_keys(pg, dataset_name, case)
    case.assert_equals_emulator(pg, dataset_name, ctl, fresh)


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_run_into_postgres_keeps_the_password_out_of_output_and_state(tmp_path, start_emulator, control_for,
                                                                          postgres_server, pg):
    emu = start_emulator("personyze", scale=300, seed=5)
    ctl = control_for(emu)
    env = cli_env("personyze", emu, tmp_path, DESTINATION__POSTGRES__CREDENTIALS=postgres_server.url)
    argv = ("run", "personyze", "--destination", "postgres", "--resources", "users,events,sessions_archive",
            "--dataset-name", "cli_personyze")
    done = cdp_sync(*argv, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "users" in done.stdout
    personyze_truth.assert_table_equals(pg, "cli_personyze", PS.USERS, ctl.export("users"))
    personyze_truth.assert_table_equals(pg, "cli_personyze", PS.EVENTS, ctl.export("events"))
    # sessions carry empty referrers: the CLI loads PostgreSQL with insert_values, which keeps them
    sessions = ctl.export("sessions_archive")
    assert any(s["referrer"] == "" for s in sessions)
    personyze_truth.assert_table_equals(pg, "cli_personyze", PS.SESSIONS_ARCHIVE, sessions)

    # a wrong password: one line naming the failure, without the password, exit 1
    wrong = postgres_server.url.replace(postgres_server.loader_password, "not-the-password-4711")
    failed = cdp_sync(*argv, "--pipeline-name", "wrong_password",
                      env={**env, "DESTINATION__POSTGRES__CREDENTIALS": wrong}, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "not-the-password-4711" not in failed.stderr + failed.stdout

    secret = postgres_server.loader_password
    assert secret not in done.stdout + done.stderr
    # nor in the local pipeline folder (state, schemas, trace) or the state row in PostgreSQL
    for path in Path(tmp_path / "dlt_data").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the database password is in {path.name}"
    (state,) = pg.execute('select state from "cli_personyze"._dlt_pipeline_state').fetchone()
    text = json.dumps(decompress_state(state))
    assert "data_last_modified" in text, "the decompressed state holds the cursors"
    assert secret not in text and emu.api_key not in text


# -- the file format PostgreSQL is loaded with ----------------------------------------------------


@pytest.mark.parametrize("file_format", ["insert_values", None])
def test_empty_strings_stay_empty_only_with_insert_values(file_format, pg, postgres_url, dataset_name,
                                                          destination_pipeline):
    """Sources yield Arrow pages. Without a file format dlt writes them for PostgreSQL as csv and
    loads them with ``COPY … FORCE_NULL(<every nullable column>)``, which reads an empty string as
    NULL; ``insert_values`` keeps the difference. cdp-sync's tests load PostgreSQL with
    ``insert_values`` for that reason (the README says so)."""
    pipeline = destination_pipeline(dlt.destinations.postgres(postgres_url), dataset_name)
    page = pa.table({"id": [1, 2, 3], "referrer": ["", None, "https://example.com/"]})
    resource = dlt.resource([page], name="pages", primary_key="id", write_disposition="merge")
    pipeline.run(resource, loader_file_format=file_format).raise_on_failed_jobs()
    job = pipeline.last_trace.last_load_info.load_packages[0].jobs["completed_jobs"]
    # the files loaded into the staging table (the merge itself is an "sql" job)
    formats = {j.job_file_info.file_format for j in job if j.job_file_info.table_name == "pages"} - {"sql"}
    loaded = dict(pg.execute(f'select id, referrer from "{dataset_name}".pages').fetchall())
    if file_format == "insert_values":
        assert formats == {"insert_values"}
        assert loaded == {1: "", 2: None, 3: "https://example.com/"}
    else:
        assert formats == {"csv"}, "dlt's default for Arrow pages into PostgreSQL"
        assert loaded == {1: None, 2: None, 3: "https://example.com/"}, "csv COPY reads '' as NULL"
