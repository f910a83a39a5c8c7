"""A virtual user: runs iterations of the scenario's requests or of a Python flow.

A flow is an ``async def`` in the scenario's flows file that receives the VU::

    async def browse(vu):
        login = await vu.post("/login", json={"user": vu.data["user"], "password": "x"})
        vu.check("logged in", login.status == 200)
        token = login.json()["token"]
        await vu.get("/items", headers={"Authorization": f"Bearer {token}"}, name="items")
        await vu.sleep(1)

``on_start(vu)``, if the file defines it, runs once per VU before its first iteration (Locust's
``on_start``); ``vu.store`` keeps per-VU state such as a token between iterations.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from scalewise.loadtest.requests import RequestSpec, weighted_cycle

if TYPE_CHECKING:
    from scalewise.loadtest.client import Prepared, Response, Transport
    from scalewise.loadtest.results import ResultRecorder
    from scalewise.loadtest.scenario import LoadPlan


@dataclass(slots=True)
class FlowResponse:
    """What a flow sees of a response: status, headers, body, and the error kind if any."""

    status: int
    body: bytes
    headers: dict[str, str]
    error: str | None
    duration: float  # service time: from the actual send
    latency: float  # from the intended send time in the open model (else the same as duration)

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 400

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class Shared:
    """State every VU of one run shares: the client, the recorder, the data cursor."""

    def __init__(
        self, plan: LoadPlan, client: Transport, recorder: ResultRecorder, seed: int | None
    ) -> None:
        self.plan = plan
        self.client = client
        self.recorder = recorder
        self.rng = random.Random(seed)
        self.row = 0
        self.data_exhausted = False
        self.prepared: dict[int, Prepared] = {}
        self.cycle = _cycle(plan)

    def next_row(self) -> Mapping[str, str] | None:
        data = self.plan.data
        if not data:
            return None
        if self.plan.data_mode == "random":
            return self.rng.choice(data)
        index = self.row
        self.row += 1
        if self.plan.data_mode == "unique" and index >= len(data):
            self.data_exhausted = True
            return None
        return data[index % len(data)]

    def prepare(self, spec: RequestSpec, row: Mapping[str, str] | None) -> Prepared:
        if spec.fixed is None:
            return self.client.prepare(spec.render(row))
        key = id(spec)
        prepared = self.prepared.get(key)
        if prepared is None:
            prepared = self.prepared[key] = self.client.prepare(spec.fixed)
        return prepared


def _cycle(plan: LoadPlan) -> tuple[int, ...]:
    return weighted_cycle([r.weight for r in plan.requests]) if plan.requests else ()


class VirtualUser:
    """One simulated user. Flows call :meth:`get`, :meth:`post`, :meth:`check`, :meth:`sleep`."""

    __slots__ = (
        "_intended",
        "_shared",
        "_step",
        "data",
        "flow",
        "id",
        "iteration",
        "retired",
        "scenario",
        "started",
        "store",
    )

    def __init__(self, vu_id: int, scenario: str, shared: Shared, flow: Callable[..., Any] | None):
        self.id = vu_id
        self.scenario = scenario
        self.iteration = 0
        self.data: Mapping[str, str] = {}
        self.store: dict[str, Any] = {}
        self.flow = flow
        self.started = False  # on_start has run (Locust's on_start, once per VU)
        self.retired = False  # a ramping-vus ramp-down: finish this iteration, then stop
        self._intended: float | None = None
        self._shared = shared
        self._step = vu_id * 7919  # spreads VUs over the request mix from the first iteration

    async def run(self, intended: float | None) -> None:
        """One iteration; ``intended`` is the open model's scheduled start (perf_counter)."""
        shared = self._shared
        started = perf_counter()
        row = shared.next_row()
        if row is not None:
            self.data = row
        elif shared.data_exhausted:
            return
        if self.flow is not None:
            self._intended = intended
            await self.flow(self)
        elif shared.plan.mode == "pick":
            cycle = shared.cycle
            spec = shared.plan.requests[cycle[self._step % len(cycle)]]
            self._step += 1
            await self._send(spec, row, intended)
        else:
            for spec in shared.plan.requests:
                await self._send(spec, row, intended)
                intended = None
        self.iteration += 1
        shared.recorder.record_iteration(self.scenario, perf_counter() - started)

    async def _send(
        self, spec: RequestSpec, row: Mapping[str, str] | None, intended: float | None
    ) -> Response:
        shared = self._shared
        checks = spec.checks
        response = await shared.client.send(
            shared.prepare(spec, row), want_body=checks is not None and checks.need_body
        )
        self._record(spec.name, response, intended)
        if checks is not None:
            for name, ok in checks.run(response.status, response.body):
                shared.recorder.record_check(name, ok)
        if spec.think_time is not None:
            await asyncio.sleep(spec.think_time.draw(shared.rng))
        return response

    def _record(self, name: str, r: Response, intended: float | None) -> None:
        failed = r.error is not None or not 200 <= r.status < 400
        self._shared.recorder.record(
            name, r.status, r.error, failed, r.started if intended is None else intended,
            r.started, r.connected, r.first_byte, r.ended, r.received, r.sent,
        )  # fmt: skip

    # -- the flow API -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        form: Mapping[str, Any] | None = None,
        files: Mapping[str, str | Path] | None = None,
        body: str | bytes | None = None,
    ) -> FlowResponse:
        """Send one request, recorded under ``name`` (default: method and URL template)."""
        plan = self._shared.plan
        spec = RequestSpec.build(
            name=name or f"{method.upper()} {url}",
            method=method.upper(),
            url=url,
            target=plan.target,
            headers=(*plan.headers, *(headers or {}).items()),
            query=query,
            json_body=json,
            form=form,
            files=[(k, Path(v)) for k, v in (files or {}).items()] or None,
            body=body.decode() if isinstance(body, bytes) else body,
            where=("(flow)", name or url),
        )
        client = self._shared.client
        intended, self._intended = self._intended, None
        response = await client.send(client.prepare(spec.render(None)), want_body=True)
        self._record(spec.name, response, intended)
        return FlowResponse(
            status=response.status,
            body=response.body or b"",
            headers={
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers or ()
            },
            error=response.error,
            duration=response.ended - response.started,
            latency=response.ended - (response.started if intended is None else intended),
        )

    async def get(self, url: str, **kwargs: Any) -> FlowResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> FlowResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> FlowResponse:
        return await self.request("PUT", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> FlowResponse:
        return await self.request("DELETE", url, **kwargs)

    def check(self, name: str, ok: bool) -> bool:
        """Count a named check in the ``checks`` rate (k6's ``check``); returns ``ok``."""
        self._shared.recorder.record_check(name, bool(ok))
        return bool(ok)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
