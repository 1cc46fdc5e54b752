"""The model registry: every variant of one repository, its state (loading, ready,
unavailable and why), and its loading, reloading and unloading. The routes of every
protocol look models up here.
"""

from __future__ import annotations

import gc
import logging
import threading

from harness.golden import Saved
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
        self.metrics = registry(
            Collector(
                lambda: {n: s.stats for n, s in self.models.items()} | {NO_MODEL: self.unknown},
                lambda: {n: s.ready for n, s in self.models.items()},
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
        if it passes its check. Blocking: call it from a thread."""
        why = catalog.refusal(self.root, name)
        if why is None:
            raise v2.ProtocolError(f"no variant {v2.quoted(name)} in the model repository")
        old = self.models.get(name)
        fresh = models.Servable(name, self.root / name, stats=old.stats if old else ModelStats())
        if why:
            fresh.state, fresh.reason = models.UNAVAILABLE, why
            return fresh
        self._load(fresh, Saved(self.config.golden))
        if fresh.ready:
            self.models[name] = fresh
            if old is not None and old.batcher is not None:
                old.batcher.close()
        return fresh

    def unload(self, name: str) -> None:
        old = self.get(name)
        self.models[name] = models.Servable(
            name,
            old.path,
            stats=old.stats,
            manifest=old.manifest,
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
        if version not in (None, v2.VERSION):
            raise v2.ProtocolError(
                f"model {name} has no version {v2.quoted(version)}; it has {v2.VERSION!r}", 404
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
