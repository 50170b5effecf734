"""A Kubernetes API emulator for the `tocsin kube` tests: kmock 0.8's KubernetesEmulator
(pinned by scripts/kmock.sh), served on loopback, with the gaps closed that break real clients
(kube-rs here, kubectl). Nothing else is changed:

- objects get a `metadata.resourceVersion`, increasing with every create and update, and lists
  carry the newest one: without it kube-rs' watcher gives up on each watch
  (`NoResourceVersion`) and re-lists forever;
- lists carry their `kind` (`PodList`, …) and `apiVersion`, as real clients expect;
- the core group's discovery (`/api/v1`) says `groupVersion: v1`, not `/v1` (kubectl would
  drop the core group);
- a request is forgotten once it is served (kmock keeps every one for assertions, and slows
  down as they pile up: ~3 ms a request at first, ~80 ms after ~1,200). Only once it is
  served: kmock finds the reaction for a request by looking for that very request among the
  ones kept, so dropping all of them while another is in flight answers it with a 500
  ("no reaction matching the request").

Left as kmock serves it: watch streams go out as `application/octet-stream` (kmock prepares the
stream response itself; kube-rs reads the stream whatever its type). Label and field selectors
are ignored and SelfSubjectAccessReviews are not answered: those are covered with kube's
`tower-test` mock in the crate's unit tests, and the consumer runs here with
`--skip-permission-check`.

One knob for the tests, not a fix: EMULATOR_EVENT_DELAY (seconds) delays every event creation,
so that a test can stop the consumer in the middle of a notification.

Usage: python emulator.py SEED.json — SEED.json is a JSON array of objects to create (each with
apiVersion, kind, metadata.name and, when namespaced, metadata.namespace). Prints the server's URL
on one line, then serves until killed.
"""
import asyncio
import itertools
import json
import os
import sys

import kmock
from kmock._internal import enums

_event_delay = float(os.environ.get("EMULATOR_EVENT_DELAY", "0"))
_versions = itertools.count(1)
_newest = [0]


def _next_version() -> str:
    _newest[0] = next(_versions)
    return str(_newest[0])


class Emulator(kmock.KubernetesEmulator):
    async def _handle(self, request):
        if (
            request.resource is not None
            and request.action in (enums.action.CREATE, enums.action.UPDATE)
            and isinstance(request.data, dict)
        ):
            request.data.setdefault("metadata", {})["resourceVersion"] = _next_version()
            if _event_delay and request.resource.plural == "events":
                await asyncio.sleep(_event_delay)
        try:
            return await super()._handle(request)
        finally:
            # Only this request: kmock matches a request to its reactions by finding it, by
            # identity, among the requests kept, so one still being served must stay there.
            self._requests[:] = [r for r in self._requests if r is not request]

    async def _serve_list(self, request):
        result = await super()._serve_list(request)
        result["metadata"]["resourceVersion"] = str(_newest[0])
        group, version = request.resource.group, request.resource.version
        result["apiVersion"] = f"{group}/{version}" if group else version
        for resource in self._get_resources():
            info = self._resources.get(resource)
            if resource == request.resource and info is not None and info.kind:
                result["kind"] = f"{info.kind}List"
                break
        return result

    async def _serve_version(self, request):
        result = await super()._serve_version(request)
        if request.resource.group == "":
            result["groupVersion"] = request.resource.version
        return result


def _resource(obj: dict) -> str:
    kind = obj["kind"]
    plural = kind.lower() + ("es" if kind.endswith("s") else "s")
    return f"{obj['apiVersion']}/{plural}"


async def main(seed_path: str) -> None:
    emulator = Emulator()
    emulator.resources.load_bundled()
    with open(seed_path) as f:
        for obj in json.load(f):
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = _next_version()
            emulator.objects[_resource(obj), meta.get("namespace"), meta["name"]] = obj
    async with emulator, kmock.Server(emulator) as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
