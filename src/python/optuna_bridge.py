"""Optuna bridge: the study worker's only way to reach Optuna.

A long-lived process that reads one JSON request per line on stdin and writes one JSON response per
line on stdout, in order. Logs go to stderr. Requests look like
``{"id": 7, "method": "ask", "params": {...}}``; responses are ``{"id": 7, "result": {...}}`` or
``{"id": 7, "error": {"type": "...", "message": "..."}}``.

Temporal runs activities at least once, so every call is idempotent:

* ``ask`` carries a key that the study workflow assigns; a second ask with the same key returns the
  trial the first one created (the key is stored as the trial's user attribute ``hpo:ask_key``).
* ``report`` skips steps that already have an intermediate value: the first value reported for a
  step is the one that counts, as in ``optuna.trial.Trial.report``.
* ``tell`` on a finished trial changes nothing and returns its stored state.

JSON has no NaN or infinity, so non-finite floats travel as the strings "nan", "inf" and "-inf".

Test hook: the environment variable ``HPO_BRIDGE_TEST_DELAY``, a JSON object such as
``{"ask": 2.0, "report": 2.0, "tell": 2.0}``, makes the bridge sleep that many seconds after a
method has written to the storage and before it responds, so that a test can kill the worker in
the middle of a call. It logs one warning line per delayed call. Never set it in production.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from typing import Any

MISSING_OPTUNA_EXIT_CODE = 3

try:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState
except ImportError as import_error:  # pragma: no cover - exercised through the Node client
    sys.stdout.write(
        json.dumps(
            {
                "fatal": {
                    "type": "MissingOptuna",
                    "message": str(import_error),
                    "python": sys.executable,
                }
            }
        )
        + "\n"
    )
    sys.stdout.flush()
    sys.exit(MISSING_OPTUNA_EXIT_CODE)

import yaml

_logger = logging.getLogger("optuna_bridge")

ASK_KEY_ATTR = "hpo:ask_key"
RUN_ID_ATTR = "hpo:run_id"
ATTEMPTS_ATTR = "hpo:attempts"
REASON_ATTR = "hpo:reason"
INTERRUPTED_ATTR = "hpo:interrupted"
RERUN_OF_ATTR = "hpo:rerun_of"
FINGERPRINT_ATTR = "hpo:search_space_fingerprint"
SEARCH_SPACE_ATTR = "hpo:search_space"
FINAL_RUN_ATTR = "hpo:final_run"
RUN_ID_PREFIX_ATTR = "hpo:run_id_prefix"

_STATE_NAMES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "fail": TrialState.FAIL,
}

# States that count toward the study's trial budget. A trial failed because its workflow was lost
# (INTERRUPTED_ATTR) is re-run instead, so it does not count.
_FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class BridgeError(Exception):
    """An invalid request: reported to the caller, never retried by it."""


TEST_DELAY_ENV = "HPO_BRIDGE_TEST_DELAY"


def _read_test_delays(methods: Iterable[str]) -> dict[str, float]:
    """Parse HPO_BRIDGE_TEST_DELAY into seconds per method; raise ValueError when it is invalid."""
    raw = os.environ.get(TEST_DELAY_ENV, "")
    if not raw.strip():
        return {}
    try:
        delays = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{TEST_DELAY_ENV} must be a JSON object, but got {raw!r}: {error}") from error
    if not isinstance(delays, dict):
        raise ValueError(f"{TEST_DELAY_ENV} must be a JSON object such as {{\"ask\": 2.0}}, but got {raw!r}")
    known = set(methods)
    for method, seconds in delays.items():
        if method not in known:
            raise ValueError(f"{TEST_DELAY_ENV} names unknown method {method!r}; expected one of {sorted(known)}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"{TEST_DELAY_ENV}: the delay of {method!r} must be a number of seconds >= 0, but got {seconds!r}")
    return {method: float(seconds) for method, seconds in delays.items()}


def _delay_response(method: str, seconds: float, params: dict[str, Any], result: dict[str, Any]) -> None:
    """Sleep between a method's storage writes and its response (the HPO_BRIDGE_TEST_DELAY hook)."""
    number = result.get("number", params.get("number"))
    steps = [item.get("step") for item in params.get("steps", [])]
    _logger.warning(
        "Test delay: %s of trial %s written (steps %s); sleeping %.1f s before the response", method, number, steps, seconds
    )
    time.sleep(seconds)


def _decode_float(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(value.lower().replace("infinity", "inf"))
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "nan"
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


class StudyCache:
    """Cache of loaded studies, so that a sampler keeps its state from one ask of a study to the next."""

    def __init__(self) -> None:
        self._storages: dict[str, optuna.storages.BaseStorage] = {}
        self._studies: dict[tuple[str, str], optuna.Study] = {}

    def storage(self, spec: dict[str, Any]) -> optuna.storages.BaseStorage:
        key = json.dumps(spec, sort_keys=True)
        if key in self._storages:
            return self._storages[key]

        if spec["kind"] == "journal":
            path = spec["path"]
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            storage: optuna.storages.BaseStorage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(path)
            )
        elif spec["kind"] == "url":
            url = spec["url"]
            engine_kwargs: dict[str, Any] = {}
            if url.startswith("sqlite:///"):
                path = url[len("sqlite:///") :]
                if path and path != ":memory:":
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                # Several processes (this bridge, optuna-dashboard, a user's notebook) may open the
                # file at once; wait for SQLite's lock instead of failing after the default 5 s.
                engine_kwargs = {"connect_args": {"timeout": 60}}
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        else:
            raise BridgeError(f"unknown storage kind {spec['kind']!r}; expected 'url' or 'journal'")

        self._storages[key] = storage
        return storage

    def study(self, ref: dict[str, Any], study_name: str | None = None, create: bool = False) -> optuna.Study:
        name = study_name or ref["study_name"]
        key = (json.dumps(ref["storage"], sort_keys=True), name)
        cached = self._studies.get(key)
        if cached is not None:
            return cached

        storage = self.storage(ref["storage"])
        sampler = _build_component(optuna.samplers, "sampler", _reseeded(ref["sampler"], storage, name))
        pruner = _build_component(optuna.pruners, "pruner", ref["pruner"])
        if create:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                direction=ref["direction"],
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        self._studies[key] = study
        return study


def _reseeded(spec: dict[str, Any], storage: optuna.storages.BaseStorage, study_name: str) -> dict[str, Any]:
    """Offset a sampler's seed by the trials the study already has.

    A seeded sampler made again for a stored study (a new bridge after a restart) would replay
    its first samples and repeat earlier trials' parameters. With the offset, a new study keeps
    the user's seed, so it stays reproducible, and a resumed one continues with new samples.
    """
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs.get("seed"), int):
        return spec
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return spec
    stored = len(storage.get_all_trials(study_id, deepcopy=False))
    if stored == 0:
        return spec
    return {**spec, "kwargs": {**kwargs, "seed": kwargs["seed"] + stored}}


def _build_component(module: Any, kind: str, spec: dict[str, Any]) -> Any:
    name = spec["name"]
    cls = getattr(module, name, None)
    if cls is None or not isinstance(cls, type):
        raise BridgeError(f"unknown Optuna {kind} {name!r} in optuna {optuna.__version__}")
    try:
        return cls(**spec.get("kwargs", {}))
    except TypeError as error:
        raise BridgeError(f"invalid arguments for {name}: {error}") from error


def _distribution(param: dict[str, Any]) -> optuna.distributions.BaseDistribution:
    kind = param["type"]
    if kind == "float":
        return FloatDistribution(
            low=float(param["low"]),
            high=float(param["high"]),
            log=bool(param.get("log", False)),
            step=param.get("step"),
        )
    if kind == "int":
        return IntDistribution(
            low=int(param["low"]),
            high=int(param["high"]),
            log=bool(param.get("log", False)),
            step=int(param.get("step") or 1),
        )
    if kind == "categorical":
        return CategoricalDistribution(choices=tuple(param["choices"]))
    raise BridgeError(f"unknown parameter type {kind!r} for {param.get('name')!r}")


def _trial_id(study: optuna.Study, number: int) -> int:
    try:
        return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError as error:
        raise BridgeError(f"trial {number} not found in study {study.study_name!r}") from error


def _trial_summary(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value if trial.values is not None and len(trial.values) == 1 else None,
        "params": trial.params,
        "run_id": trial.user_attrs.get(RUN_ID_ATTR),
        "attempts": trial.user_attrs.get(ATTEMPTS_ATTR, 0),
        "reason": trial.user_attrs.get(REASON_ATTR),
        "interrupted": bool(trial.user_attrs.get(INTERRUPTED_ATTR, False)),
        "last_step": trial.last_step,
    }


def _counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state in _FINISHED_STATES and not trial.user_attrs.get(INTERRUPTED_ATTR, False)


class Bridge:
    def __init__(self) -> None:
        self.cache = StudyCache()

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"optuna_version": optuna.__version__, "python": sys.executable, "pid": os.getpid()}

    def open_study(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create or load the study; on a changed search space, switch to a derived study name.

        With ``recover_running``, trials left RUNNING by a study workflow that no longer exists are
        failed (marked interrupted) and their parameters enqueued, so the new workflow re-runs them.
        """
        ref = params["study"]
        fingerprint = params["fingerprint"]
        requested = ref["study_name"]
        warning = None
        name = requested

        storage = self.cache.storage(ref["storage"])
        summaries = optuna.study.get_all_study_summaries(storage, include_best_trial=False)
        fingerprints = {s.study_name: s.user_attrs.get(FINGERPRINT_ATTR) for s in summaries}
        if requested in fingerprints and fingerprints[requested] not in (None, fingerprint):
            # A derived study made earlier for this same search space is continued, not made again.
            derived = sorted(n for n, f in fingerprints.items() if n.startswith(f"{requested}__") and f == fingerprint)
            name = derived[-1] if derived else f"{requested}__{params['run_id_prefix']}"
            warning = (
                f"the search space of study {requested!r} changed since it was created; "
                f"continuing in {'the' if derived else 'a new'} study {name!r} so the stored trials stay comparable"
            )

        study = self.cache.study(ref, study_name=name, create=True)
        if study.direction.name.lower() != ref["direction"]:
            raise BridgeError(
                f"study {name!r} exists with direction {study.direction.name.lower()}, "
                f"but the config asks for {ref['direction']}; use another study_name"
            )
        if FINGERPRINT_ATTR not in study.user_attrs:
            study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
            study.set_user_attr(SEARCH_SPACE_ATTR, params["search_space"])
        # Run ids keep the prefix of the study's first start, so a resumed study names its new
        # trials like its old ones and the final run once.
        # A derived study's run ids start with its own name, so they never reuse the folders of
        # the original study's runs, even when the config sets an explicit run_id_prefix.
        run_id_prefix = study.user_attrs.get(RUN_ID_PREFIX_ATTR)
        if run_id_prefix is None:
            run_id_prefix = name if name != requested else params["run_id_prefix"]
            study.set_user_attr(RUN_ID_PREFIX_ATTR, run_id_prefix)

        recovered: list[int] = []
        if params.get("recover_running"):
            recovered = self._recover_running(study, keep=set(params.get("keep", [])))

        trials = study.get_trials(deepcopy=False)
        return {
            "study_name": name,
            "run_id_prefix": run_id_prefix,
            "derived": name != requested,
            "warning": warning,
            "recovered": recovered,
            "counted": sum(1 for t in trials if _counts_toward_budget(t)),
            "trials": [_trial_summary(t) for t in trials if t.state != TrialState.WAITING],
            "final_run": study.user_attrs.get(FINAL_RUN_ATTR),
        }

    def _recover_running(self, study: optuna.Study, keep: set[int]) -> list[int]:
        recovered = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in keep:
                continue
            trial_id = trial._trial_id
            study._storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
            study._storage.set_trial_user_attr(
                trial_id, REASON_ATTR, "interrupted: its study workflow no longer exists; re-run as a new trial"
            )
            _tell(study, trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={RERUN_OF_ATTR: trial.number}, skip_if_exists=False)
            recovered.append(trial.number)
            _logger.warning("Trial %d was left RUNNING by a lost workflow; failed it and enqueued a re-run.", trial.number)
        return recovered

    def ask(self, params: dict[str, Any]) -> dict[str, Any]:
        study = self.cache.study(params["study"])
        key = params["key"]
        for trial in study.get_trials(deepcopy=False):
            if trial.user_attrs.get(ASK_KEY_ATTR) == key:
                return {"number": trial.number, "params": trial.params, "reused": True}

        distributions = {p["name"]: _distribution(p) for p in params["search_space"]}
        trial = study.ask(fixed_distributions=distributions)
        trial.set_user_attr(ASK_KEY_ATTR, key)
        run_id = params.get("run_id_prefix")
        if run_id is not None:
            trial.set_user_attr(RUN_ID_ATTR, f"{run_id}_t{trial.number:04d}")
        return {"number": trial.number, "params": trial.params, "reused": False}

    def report(self, params: dict[str, Any]) -> dict[str, Any]:
        study = self.cache.study(params["study"])
        number = params["number"]
        trial_id = _trial_id(study, number)
        frozen = study._storage.get_trial(trial_id)
        if frozen.state.is_finished():
            return {"should_prune": False, "reported": [], "skipped": [s["step"] for s in params["steps"]], "finished": True}

        trial = optuna.trial.Trial(study, trial_id)
        reported, skipped = [], []
        for item in params["steps"]:
            step = int(item["step"])
            if step in frozen.intermediate_values:
                skipped.append(step)
                continue
            value = _decode_float(item["value"])
            if value is None:
                skipped.append(step)
                continue
            trial.report(float(value), step)
            frozen.intermediate_values[step] = float(value)
            reported.append(step)
        return {"should_prune": bool(trial.should_prune()), "reported": reported, "skipped": skipped, "finished": False}

    def tell(self, params: dict[str, Any]) -> dict[str, Any]:
        study = self.cache.study(params["study"])
        number = params["number"]
        trial_id = _trial_id(study, number)
        frozen = study._storage.get_trial(trial_id)
        if frozen.state.is_finished():
            return {"state": frozen.state.name, "value": frozen.value, "already_finished": True}

        for key, value in (params.get("user_attrs") or {}).items():
            study._storage.set_trial_user_attr(trial_id, key, value)

        state = _STATE_NAMES.get(params["state"])
        if state is None:
            raise BridgeError(f"unknown trial state {params['state']!r}; expected complete, pruned or fail")
        if state == TrialState.COMPLETE:
            value = _decode_float(params.get("value"))
            if value is None:
                raise BridgeError(f"trial {number}: a COMPLETE trial needs a value")
            # Optuna itself turns a NaN value into a FAIL trial, with a warning naming the trial.
            _tell(study, number, values=float(value))
        else:
            _tell(study, number, state=state)

        finished = study._storage.get_trial(trial_id)
        return {"state": finished.state.name, "value": finished.value, "already_finished": False}

    def fail_stale(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fail RUNNING trials that no trial workflow owns, so none stays RUNNING forever."""
        study = self.cache.study(params["study"])
        keep = set(params.get("keep", []))
        failed = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in keep:
                continue
            study._storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, params["reason"])
            _tell(study, trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
        return {"failed": failed}

    def set_study_attr(self, params: dict[str, Any]) -> dict[str, Any]:
        study = self.cache.study(params["study"])
        study.set_user_attr(params["key"], params["value"])
        return {}

    def summary(self, params: dict[str, Any]) -> dict[str, Any]:
        study = self.cache.study(params["study"])
        trials = study.get_trials(deepcopy=False)
        best = _best_trial(study)
        return {
            "study_name": study.study_name,
            "trials": [_trial_summary(t) for t in trials if t.state != TrialState.WAITING],
            "counted": sum(1 for t in trials if _counts_toward_budget(t)),
            "best": _trial_summary(best) if best is not None else None,
            "final_run": study.user_attrs.get(FINAL_RUN_ATTR),
        }

    def write_artifacts(self, params: dict[str, Any]) -> dict[str, Any]:
        """Rewrite trials.csv and best_params.yaml from the storage, each by an atomic rename."""
        study = self.cache.study(params["study"])
        folder = params["artifact_dir"]
        os.makedirs(folder, exist_ok=True)

        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(["trial_number", "state", "value", "run_id", "params_json"])
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.WAITING:
                continue
            value = trial.value if trial.values is not None and len(trial.values) == 1 else None
            writer.writerow(
                [
                    trial.number,
                    trial.state.name,
                    "" if value is None else f"{value:.8f}",
                    trial.user_attrs.get(RUN_ID_ATTR, ""),
                    json.dumps(trial.params, sort_keys=True),
                ]
            )
        trials_csv = os.path.join(folder, "trials.csv")
        _write_atomically(trials_csv, rows.getvalue())

        best = _best_trial(study)
        document = {
            "study_name": study.study_name,
            "direction": study.direction.name.lower(),
            "objective_metric": params["objective_metric"],
            "best_value": None if best is None else best.value,
            "best_params": None if best is None else dict(best.params),
        }
        if best is not None:
            document["best_trial"] = best.number
            document["best_run_id"] = best.user_attrs.get(RUN_ID_ATTR)
        best_yaml = os.path.join(folder, "best_params.yaml")
        _write_atomically(best_yaml, yaml.safe_dump(document, sort_keys=False))
        return {
            "trials_csv": trials_csv,
            "best_params_yaml": best_yaml,
            "best": _trial_summary(best) if best is not None else None,
        }


def _tell(study: optuna.Study, number: int, **kwargs: Any) -> None:
    # NOTE: GridSampler.after_trial calls Study.stop() once the grid is exhausted, and stop()
    # raises outside Study.optimize (Optuna 5.1). Telling from here counts as the optimize loop:
    # the stop flag it sets is never read, because the study workflow owns the trial budget.
    thread_local = study._thread_local
    was_in_loop = thread_local.in_optimize_loop
    thread_local.in_optimize_loop = True
    try:
        study.tell(number, skip_if_finished=True, **kwargs)
    finally:
        thread_local.in_optimize_loop = was_in_loop


def _best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def _respond(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(_encode(message), allow_nan=False) + "\n")
    sys.stdout.flush()


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group: the worker shuts down first and then
    # closes stdin, which ends this loop, so the bridge must outlive the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[optuna-bridge %(levelname)s] %(message)s")
    # Optuna's own log lines ("Trial 3 finished with value ...") go to stderr, where the worker logs them.
    optuna.logging.enable_propagation()
    optuna.logging.disable_default_handler()

    bridge = Bridge()
    methods = {
        "ping": bridge.ping,
        "open_study": bridge.open_study,
        "ask": bridge.ask,
        "report": bridge.report,
        "tell": bridge.tell,
        "fail_stale": bridge.fail_stale,
        "set_study_attr": bridge.set_study_attr,
        "summary": bridge.summary,
        "write_artifacts": bridge.write_artifacts,
    }
    try:
        test_delays = _read_test_delays(methods)
    except ValueError as error:
        _respond({"fatal": {"type": "InvalidTestDelay", "message": str(error), "python": sys.executable}})
        return 2
    _respond({"ready": {"optuna_version": optuna.__version__, "python": sys.executable, "pid": os.getpid()}})

    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            method = methods.get(request.get("method"))
            if method is None:
                raise BridgeError(f"unknown method {request.get('method')!r}")
            params = request.get("params") or {}
            result = method(params)
            delay = test_delays.get(request["method"])
            if delay is not None:
                _delay_response(request["method"], delay, params, result)
            _respond({"id": request_id, "result": result})
        except BridgeError as error:
            _respond({"id": request_id, "error": {"type": "BridgeError", "message": str(error)}})
        except Exception as error:  # noqa: BLE001 - every failure goes back to the caller, which retries
            _logger.error("Request %s failed: %s", request_id, traceback.format_exc())
            _respond({"id": request_id, "error": {"type": type(error).__name__, "message": str(error)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
