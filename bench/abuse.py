"""Abuse replay: the stalls, the sandbox-in-production holes and the 500s of issue 13, sent to a
real `gateway run` (web app and worker in one event loop, the embedded defaults) while a prober
asks `/healthz` every 20 ms.

    .venv/bin/python -m bench.abuse [--database-url postgresql://...] [--repeat 3]

For each attack it prints one line: the statuses it got (all must be 4xx), the slowest
`/healthz` answer while it ran, and the CPU the gateway process spent on it. The first line is
the baseline: the same prober with no attack, in the same run (and an ordinary reply stands
beside the ReDoS one); baselines are printed, not judged. A line ends in `ok` when every
status is a 4xx and `/healthz` stayed under 100 ms; the script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from twilio.request_validator import RequestValidator

from bench import support
from gateway.settings import SANDBOX_PATH

HEALTHZ_LIMIT_MS = 100.0
PROBE_EVERY = 0.02
SETTLE = 1.0  # seconds of probing after an attack's last answer: work it left behind shows too
REDOS = "ReDoS pattern"
BASELINE = "baseline"  # what the gateway does without an attack: printed, never judged
PUBLISHED_SANDBOX_AUTH = ("AC" + "5a" * 16, "sandbox-auth-token")  # the old fixed credentials


@dataclass
class Outcome:
    name: str
    statuses: list[int | str]
    healthz_max_ms: float
    cpu_ms: float
    expect_4xx: bool = True

    @property
    def ok(self) -> bool:
        codes_ok = not self.expect_4xx or all(
            isinstance(s, int) and 400 <= s < 500 for s in self.statuses
        )
        return codes_ok and self.healthz_max_ms < HEALTHZ_LIMIT_MS


@dataclass
class Prober:
    """GET /healthz on its own connection every PROBE_EVERY seconds; keeps the slowest answer."""

    url: str
    latencies: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while not stop.is_set():
                started = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(self.url + "/healthz")
                self.latencies.append(time.perf_counter() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PROBE_EVERY)


Attack = Callable[[], Awaitable[list[int | str]]]


async def measure(
    name: str, attack: Attack, run: support.Target, pid: int, *, expect_4xx: bool = True
) -> Outcome:
    prober = Prober(run.base_url)
    stop = asyncio.Event()
    probing = asyncio.create_task(prober.run(stop))
    await asyncio.sleep(0.1)  # the prober is connected and answering before the attack
    cpu_before = support.cpu_seconds(pid)
    statuses = await attack()
    await asyncio.sleep(SETTLE)
    cpu = support.cpu_seconds(pid) - cpu_before
    stop.set()
    await probing
    worst = max(prober.latencies) * 1000 if prober.latencies else float("inf")
    return Outcome(name, statuses, worst, cpu * 1000, expect_4xx)


# -- raw HTTP, for bodies no client library would send whole --------------------------------


async def raw_post(
    port: int, path: str, headers: dict[str, str], total: int, *, chunked: bool
) -> int | str:
    """POST `total` bytes (chunked, or declared by Content-Length) while reading the answer;
    the status of an answer that comes before the body is all sent. A declared body is not sent
    at all: the server must answer on the header alone."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode()
    # Plain sockets in threads: the server answers 413 and closes with our unread chunks in its
    # buffer, so the sender meets a reset; an asyncio transport would drop the answer with it.
    return await asyncio.to_thread(_post_blocking, port, request, total if chunked else 0)


def _post_blocking(port: int, request: bytes, chunked_total: int) -> int | str:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def pump() -> None:
        chunk = b"a" * 16_384
        with contextlib.suppress(OSError):  # the reset that ends it, or our own close
            sock.sendall(request)
            for _ in range(chunked_total // len(chunk)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if chunked_total:
                sock.sendall(b"0\r\n\r\n")

    sending = threading.Thread(target=pump, daemon=True)
    sending.start()
    try:
        with sock.makefile("rb") as answer:
            status_line = answer.readline()
    except OSError:
        return "no answer"
    finally:
        sock.close()
        sending.join(30)
    parts = status_line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else "closed"


# -- the attacks ------------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _redos_playbook() -> str:
    return """\
name: ReDoS
activities:
  outcomes: [qualified]
steps:
  - id: hi
    kind: ask
    text: "Reply with a's"
    choices:
      - patterns: ["^(a|a)*$"]
        outcome: qualified
"""


async def attacks(
    run: support.Target, tenant: support.Tenant, api: httpx.AsyncClient, port: int
) -> list[tuple[str, Attack]]:
    token = run.sandbox_auth[1]
    validator = RequestValidator(token)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def signed(path: str, params: dict[str, str]) -> tuple[str, dict[str, str]]:
        signature = validator.compute_signature(run.base_url + path, params)
        return urlencode(params), {**form, "X-Twilio-Signature": signature}

    async def post_signed(path: str, params: dict[str, str]) -> list[int | str]:
        body, headers = signed(path, params)
        return [(await api.post(path, content=body, headers=headers)).status_code]

    async def many_fields() -> list[int | str]:
        body = "&".join(f"f{i}=" for i in range(8000))
        headers = {**form, "X-Twilio-Signature": "junk"}
        return [(await api.post("/twilio/sms", content=body, headers=headers)).status_code]

    async def huge_body_with_length() -> list[int | str]:
        headers = {**form, "X-Twilio-Signature": "junk"}
        return [await raw_post(port, "/twilio/sms", headers, 256 * 2**20, chunked=False)]

    async def huge_body_chunked() -> list[int | str]:
        headers = {**form, "X-Twilio-Signature": "junk"}
        return [await raw_post(port, "/twilio/sms", headers, 256 * 2**20, chunked=True)]

    async def huge_playbook() -> list[int | str]:
        keys = "\n".join(f"  k{i}: v" for i in range(80_000))
        document = f"name: Big\nsettings:\n{keys}\nsteps: []\n"
        headers = {"Content-Type": "application/yaml"}
        answer = await api.put("/v1/playbooks/big", content=document, headers=headers)
        return [answer.status_code]

    # The ReDoS play is set up before any measuring: publish (RE2 may accept the pattern, as it
    # runs it in linear time) and start a play that waits for the lead's reply.
    published = await api.put(
        "/v1/playbooks/redos",
        content=_redos_playbook(),
        headers={"Content-Type": "application/yaml"},
    )
    redos_phones = support.lead_phones(2, start=500)
    if published.is_success:
        for phone in redos_phones:
            body = {"playbook_id": "redos", "lead": {"phone": phone}}
            (await api.post("/v1/plays", json=body)).raise_for_status()
        await asyncio.sleep(3)  # the first texts leave; the plays wait for the replies

    def lead_texts(phone: str, text: str) -> Attack:
        async def attack() -> list[int | str]:
            if not published.is_success:
                return [published.status_code]  # refused at publish: nothing to trigger
            async with httpx.AsyncClient(base_url=run.base_url, auth=run.sandbox_auth) as c:
                sms = await c.post(
                    f"{SANDBOX_PATH}/_sandbox/sms",
                    json={"from": phone, "to": tenant.number, "body": text},
                )
            await asyncio.sleep(1)  # the reply job runs in this process's loop meanwhile
            # Publishing was allowed: what counts is that the lead's text stalls nothing, so
            # these statuses (the publish, the text) are not held to 4xx.
            return [published.status_code, sms.status_code]

        return attack

    async def sandbox_published_credentials() -> list[int | str]:
        async with httpx.AsyncClient(base_url=run.base_url, auth=PUBLISHED_SANDBOX_AUTH) as c:
            sid = PUBLISHED_SANDBOX_AUTH[0]
            answer = await c.get(f"{SANDBOX_PATH}/2010-04-01/Accounts/{sid}/Messages.json")
        return [answer.status_code]

    async def sandbox_callback_elsewhere() -> list[int | str]:
        async with httpx.AsyncClient(base_url=run.base_url, auth=run.sandbox_auth) as sandbox:
            answer = await sandbox.post(
                f"{SANDBOX_PATH}/_sandbox/numbers",
                json={"number": "+18085550177", "sms_url": "http://127.0.0.1:1/steal"},
            )
        return [answer.status_code]

    async def unicode_digits() -> list[int | str]:
        statuses: list[int | str] = []
        for name in ("NumSegments", "NumMedia", "ErrorCode"):
            params = {
                "MessageSid": "SM" + "7" * 32,
                "AccountSid": run.sandbox_auth[0],
                "From": support.lead_phones(1, start=600)[0],
                "To": tenant.number,
                "Body": "hi",
                "MessageStatus": "undelivered",
                name: "\u00b2",
            }
            path = "/twilio/sms/status" if name == "ErrorCode" else "/twilio/sms"
            statuses += await post_signed(path, params)
        return statuses

    async def datetime_edges() -> list[int | str]:
        statuses: list[int | str] = []
        for edge in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
            q = quote(edge)
            statuses.append((await api.get(f"/v1/plays?since={q}")).status_code)
            statuses.append((await api.get(f"/v1/opt-outs?since={q}&until={q}")).status_code)
            statuses.append((await api.get(f"/v1/opt-outs/export?until={q}")).status_code)
            body = {"phone": support.lead_phones(1, start=700)[0], "received_at": edge}
            statuses.append((await api.post("/v1/opt-outs", json=body)).status_code)
            lead = {"phone": support.lead_phones(1, start=701)[0], "consent": {"captured_at": edge}}
            statuses.append((await api.post("/v1/leads", json=lead)).status_code)
        return statuses

    async def deep_additional_info() -> list[int | str]:
        lead = {"phone": support.lead_phones(1, start=800)[0], "additional_info": _nested(900)}
        created = await api.post("/v1/leads", json=lead)
        listed = await api.get("/v1/leads")
        # The lead is refused, and the account's leads can still be listed (a 500 shows here).
        return [created.status_code] + ([] if listed.status_code == 200 else [listed.status_code])

    async def yaml_tags() -> list[int | str]:
        headers = {"Content-Type": "application/yaml"}
        statuses: list[int | str] = []
        for tag in ("!!binary aGVsbG8=", "!!set {a, b}"):
            document = f"name: Tags\nsettings:\n  x: {tag}\nsteps: []\n"
            answer = await api.put("/v1/playbooks/tags", content=document, headers=headers)
            statuses.append(answer.status_code)
        return statuses

    async def crlf_webhook() -> list[int | str]:
        body = {"url": "http://8.8.8.8/x\r\nX-Injected: 1"}
        return [(await api.post("/v1/webhooks", json=body)).status_code]

    return [
        ("1. 8,000 form fields, junk signature", many_fields),
        ("1. 256 MB body, Content-Length", huge_body_with_length),
        ("1. 256 MB body, chunked", huge_body_chunked),
        ("1. playbook with 80,000 settings keys", huge_playbook),
        (f"{BASELINE}: a lead texts 'hello'", lead_texts(redos_phones[0], "hello")),
        (f"1. {REDOS}: the lead texts 40 a's and !", lead_texts(redos_phones[1], "a" * 40 + "!")),
        ("3. sandbox with published credentials", sandbox_published_credentials),
        ("3. sandbox callback to another address", sandbox_callback_elsewhere),
        ("4. Unicode digits in Twilio integers", unicode_digits),
        ("4. datetimes at the edge of the range", datetime_edges),
        ("4. additional_info nested 900 deep", deep_additional_info),
        ("4. YAML !!binary and !!set", yaml_tags),
        ("4. webhook URL with CR/LF", crlf_webhook),
    ]


def production_without_credentials(run: support.Target) -> tuple[int, str]:
    """`ENVIRONMENT=production gateway web` with no Twilio credentials: exit code, last line."""
    env = run.env(ENVIRONMENT="production", PORT=str(support.free_port()))
    done = subprocess.run(
        [*support.GATEWAY, "web", "--host", "127.0.0.1"],
        env=env,
        cwd=support.REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode, lines[-1] if lines else ""


async def main_async(args: argparse.Namespace) -> int:
    print(f"# {support.machine()}; {support.database_label(args.database_url)}", file=sys.stderr)
    failed = False
    async with support.target(args.database_url) as run:
        code, line = production_without_credentials(run)
        refused = code != 0
        print(f"3. production without Twilio credentials: exit {code}: {line}")
        failed |= not refused
        tenant = await support.create_tenant(run)
        service = run.start("run", [*support.GATEWAY, "run", "--host", "127.0.0.1"], run.base_url)
        await support.wait_ready(service)
        async with run.api(tenant) as api:
            print(_line(await measure(BASELINE + ": no attack", _no_attack, run, service.pid)))
            for name, attack in await attacks(run, tenant, api, run.port):
                for i in range(args.repeat):
                    label = name if args.repeat == 1 else f"{name} (#{i + 1})"
                    outcome = await measure(
                        label,
                        attack,
                        run,
                        service.pid,
                        expect_4xx=REDOS not in name and not name.startswith(BASELINE),
                    )
                    print(_line(outcome))
                    failed |= not outcome.ok and not name.startswith(BASELINE)
    return 1 if failed else 0


async def _no_attack() -> list[int | str]:
    await asyncio.sleep(1)
    return []


def _line(outcome: Outcome) -> str:
    verdict = (
        "(not judged)" if outcome.name.startswith(BASELINE) else "ok" if outcome.ok else "NOT OK"
    )
    statuses = ",".join(str(s) for s in outcome.statuses) or "-"
    return (
        f"{outcome.name:<56} status {statuses:<16} healthz max {outcome.healthz_max_ms:7.1f} ms"
        f"  gateway CPU {outcome.cpu_ms:7.0f} ms  {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL server URL")
    parser.add_argument("--repeat", type=int, default=1, help="times to send each attack")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
