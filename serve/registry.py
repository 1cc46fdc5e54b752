"""The model registry: every variant of one repository, its state (loading, ready,
unavailable and why), and its loading, reloading and unloading. The routes of every
protocol look models up here.

A reload is a rollout: the variant's live version (a new export, or a rollback) is loaded
beside the one serving and checked as at start-up (models.check), then compared with the
serving version on the labelled golden images (models.compare). It takes traffic only if
both pass: one assignment moves every new request to it, and the old version's batcher
serves what it already holds before its worker ends. Otherwise the serving version keeps
serving, and its metadata, the log and /metrics say which version was refused and why.
With `--model-control poll` a thread reloads every variant whose manifest changed.
"""

from __future__ import annotations

import gc
import logging
import threading

from export import repository
from harness.golden import Saved
from harness.verdict import FAIL
from serve import catalog, models, v2
from serve.config import ServeConfig
from serve.metrics import NO_MODEL, Collector, ModelStats, registry

log = logging.getLogger("serve")


class Registry:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.root = config.repository.absolute()
        self.models: dict[str, models.Servable] = {}
        for name, why in catalog.scan(self.root).items():
            self.models[name] = models.Servable(name, self.root / name)
            if why:  # listed with its reason, said once, never loaded
                self.models[name].state, self.models[name].reason = models.UNAVAILABLE, why
                log.warning("refused %s: %s", v2.quoted(name), why)
        self.unknown = ModelStats()  # requests naming no model this registry holds
        self.loaded = threading.Event()
        self.reloading = threading.Lock()  # one rollout at a time: poll and load requests
        self.polled: dict[str, object] = {}  # per variant, the manifest last acted on
        self.metrics = registry(
            Collector(
                lambda: {n: s.stats for n, s in self.models.items()} | {NO_MODEL: self.unknown},
                lambda: {n: s.ready for n, s in self.models.items()},
                lambda: {n: s.version for n, s in self.models.items() if s.ready},
            )
        )

    def _load(self, servable: models.Servable, golden: Saved) -> None:
        c = self.config
        delay = c.max_delay_ms / 1000
        models.load(servable, golden, c.threads, c.max_batch, delay, c.max_queue)

    def load_all(self) -> None:
        golden = Saved(self.config.golden)
        for servable in self.models.values():
            if servable.state != models.LOADING:
                continue  # refused by the scan, already said why
            self._load(servable, golden)
            if servable.ready:
                log.info("%s ready", servable.name)
            else:
                log.error("%s unavailable: %s", servable.name, servable.reason)
        # The runtimes' objects live as long as the server: out of the collector's sight,
        # a full collection no longer walks them (with TensorFlow and torch loaded, a
        # pause of tens of ms on the event loop otherwise).
        gc.freeze()
        self.loaded.set()

    def reload(self, name: str) -> models.Servable:
        """Load (again) one variant from the repository; it replaces the served one only
        if it passes its check and is not decisively less accurate (module docstring).
        Blocking: call it from a thread."""
        with self.reloading:
            return self._rollout(name)

    def _rollout(self, name: str) -> models.Servable:
        why = catalog.refusal(self.root, name)
        if why is None:
            raise v2.ProtocolError(f"no variant {v2.quoted(name)} in the model repository")
        old = self.models.get(name)
        fresh = models.Servable(name, self.root / name, stats=old.stats if old else ModelStats())
        if why:
            fresh.state, fresh.reason = models.UNAVAILABLE, why
        else:
            self._load(fresh, Saved(self.config.golden))
        if fresh.ready and old is not None and old.ready and old.version != fresh.version:
            verdict, reason = models.compare(fresh, old)
            if verdict == FAIL:
                fresh.batcher.close()
                fresh.state, fresh.reason = models.UNAVAILABLE, reason
        if not fresh.ready:
            if old is not None and old.ready:
                what = f"version {fresh.version}" if fresh.manifest else "the new export"
                old.refused = {"version": fresh.version, "reason": fresh.reason}
                old.stats.rollouts["refused"] += 1
                log.warning(
                    "%s: %s refused, version %s keeps serving: %s",
                    name,
                    what,
                    old.version,
                    fresh.reason,
                )
            return fresh
        self.models[name] = fresh  # every request from here on gets the new version
        if old is not None and old.ready and old.version != fresh.version:
            fresh.stats.rollouts["promoted"] += 1
            log.info("%s: version %s live (was %s)", name, fresh.version, old.version)
        if old is not None and old.batcher is not None:
            old.batcher.close()  # serves what it holds, then its worker ends
        return fresh

    def poll(self) -> list[str]:
        """Reload each variant whose manifest changed since it was loaded (or last tried):
        a new export, a rollback, a new folder. Returns the names reloaded."""
        changed = []
        for name in catalog.scan(self.root):
            try:  # an unreadable manifest changes nothing: what serves keeps serving
                on_disk = repository.read_manifest(self.root / name)
            except repository.IntegrityError:
                continue
            servable = self.models.get(name)
            seen = self.polled.get(name, servable.manifest if servable else None)
            if on_disk == seen:
                continue
            self.polled[name] = on_disk
            try:
                self.reload(name)
            except v2.ProtocolError:  # the folder went between the scan and the reload
                continue
            changed.append(name)
        return changed

    def unload(self, name: str) -> None:
        old = self.get(name)
        self.models[name] = models.Servable(
            name,
            old.path,
            stats=old.stats,
            manifest=old.manifest,
            version=old.version,
            state=models.UNAVAILABLE,
            reason="unloaded through /v2/repository/models/<m>/unload",
        )
        if old.batcher is not None:
            old.batcher.close()

    def not_ready(self) -> str:
        """Empty when every variant serves (Triton's strict readiness), else why not."""
        if not self.models:
            return "no variants in the model repository: run `make export`"
        if not self.loaded.is_set():
            return "loading variants"
        return "; ".join(f"{s.name}: {s.reason}" for s in self.models.values() if not s.ready)

    def get(self, name: str, version: str | None = None) -> models.Servable:
        servable = self.models.get(name)
        if servable is None:
            raise v2.ProtocolError(
                f"unknown model {v2.quoted(name)}; see /v2/repository/index", 404
            )
        if version is not None and version != servable.version:
            held = ", ".join(servable.metadata()["repository_versions"])
            raise v2.ProtocolError(
                f"model {name} serves version {servable.version}, not {v2.quoted(version)} "
                f"(the repository holds {held}; `make rollback` makes another live)",
                404,
            )
        return servable

    def serving(self, name: str, version: str | None = None) -> models.Servable:
        servable = self.get(name, version)
        if not servable.ready:
            raise v2.ProtocolError(f"model {name} is not ready: {servable.reason}", 503)
        return servable

    def without_paths(self, message: str) -> str:
        """An error message fit for clients: variants named, no filesystem paths."""
        return catalog.without_paths(message, self.root)

    def close(self) -> None:
        for servable in self.models.values():
            if servable.batcher is not None:
                servable.batcher.close()
