"""results.json → results.md (tables, ratios to the raw app) and PNG plots (matplotlib, Agg)."""

import json
from pathlib import Path
from typing import Any

RAW = "raw"



AGENCY_TARGET = 1000  # notices/s a process is to hold (README, performance); an agency step

def _get(results: dict[str, Any], scenario: str, server: str, *keys: str) -> Any:
    value: Any = results.get("scenarios", {}).get(scenario, {}).get(server)
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ratio(value: Any, reference: Any) -> str:
    if not isinstance(value, int | float) or not reference:
        return ""
    return f" ({value / reference:.2f}x)"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _servers(results: dict[str, Any], scenario: str) -> list[str]:
    return [s for s in results["servers"] if s in results.get("scenarios", {}).get(scenario, {})]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# Sonor benchmark results", "",
        f"Profile `{meta['profile']}`, {meta['started_at']}, {meta['seconds']:.0f} s. "
        f"Machine: {meta['cpu']}, {meta['cores']} cores, Python {meta['python']}; load average "
        f"{meta['load_before']} before, {meta['load_after']} after. Servers on core "
        f"{meta['server_core']}, the load generator ({meta['workers']} processes) on core "
        f"{meta['load_core']}. Only ratios between servers of this one run mean anything.",
        f"Command: `{meta['command']}`", "",
    ]
    errors = [(scenario, server, value["error"])
              for scenario, per in results.get("scenarios", {}).items()
              for server, value in per.items() if isinstance(value, dict) and "error" in value]
    for note in results.get("skipped", []):
        lines.append(f"- skipped: {note}")
    for scenario, server, error in errors:
        lines.append(f"- {scenario} on {server} failed: {error}")
    if errors or results.get("skipped"):
        lines.append("")

    chat = _servers(results, "chat")
    if chat:
        members = _get(results, "chat", chat[0], "big_room_members")
        raw_small = _get(results, "chat", RAW, "rooms_of_10", "search", "held_deliveries_per_s")
        raw_big = _get(results, "chat", RAW, "big_room", "search", "held_deliveries_per_s")
        fixed_small = _get(results, "chat", chat[0], "rooms_of_10", "fixed", "rate")
        fixed_big = _get(results, "chat", chat[0], "big_room", "fixed", "rate")
        tries = results["meta"]["profile_values"]["tries"]
        lines += [
            "## Chat fan-out", "",
            f"Deliveries/s held = the highest rate of the search at which p99 ≤ 100 ms with "
            f"nothing lost or unacknowledged in one of {tries} trials (× the raw app); `≥` when "
            "even the last step held. "
            f"Fixed rate: {_num(fixed_small)} msgs/s in rooms of 10, {_num(fixed_big)} msgs/s in "
            f"the room of {_num(members)}, the same for every server ({tries} trials; the one "
            "with the median p99 shown). Latency is from the scheduled send time to arrival "
            "at each member. Server CPU per delivery: the server's CPU time over a fixed-rate "
            "trial divided by its deliveries, the median of the trials (× the raw app's: lower "
            "is better); a busy machine disturbs it least.", "",
            f"| server | rooms of 10: deliveries/s held | room of {_num(members)}: deliveries/s "
            "held | rooms of 10 fixed: p50 / p99 ms | big room fixed: p50 / p99 ms "
            "| server CPU µs per delivery, fixed: rooms of 10 / big room |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for server in chat:
            row = [server]
            for layout, raw in (("rooms_of_10", raw_small), ("big_room", raw_big)):
                search = _get(results, "chat", server, layout, "search") or {}
                held = search.get("held_deliveries_per_s")
                row.append(("≥ " if search.get("capped") else "") + _num(held) + _ratio(held, raw))
            for layout in ("rooms_of_10", "big_room"):
                fixed = _get(results, "chat", server, layout, "fixed") or {}
                lost = sum(t["lost"] for t in
                           _get(results, "chat", server, layout, "fixed_tries") or [])
                row.append(f"{_num(fixed.get('p50_ms'))} / {_num(fixed.get('p99_ms'))}"
                           + (f", lost {lost}" if lost else ""))
            row.append(" / ".join(
                _cpu_per_delivery(results, server, layout) + _ratio(
                    _median_cpu(results, server, layout), _median_cpu(results, RAW, layout))
                for layout in ("rooms_of_10", "big_room")))
            lines.append("| " + " | ".join(row) + " |")
        raw_steps = [s for layout in ("rooms_of_10", "big_room")
                     for s in (_get(results, "chat", RAW, layout, "search", "steps") or [])]
        if raw_steps:
            top = max(raw_steps, key=lambda s: s["deliveries_per_s"])
            lines += ["", f"The load generator drove the raw app to "
                      f"{top['deliveries_per_s']:,} deliveries/s (its highest rate in any step; "
                      f"p99 {_num(top['p99_ms'])} ms; CPU: generator "
                      f"{top.get('generator_cpu_percent')} %, raw app "
                      f"{top.get('server_cpu_percent')} % of a core): the generator is not what "
                      "limits the Sonor figures below that."]
        lines += [
            "", "### 1.5× saturation (rooms of 10)", "",
            "| server | offered msgs/s | delivered / expected | lost | unacked | closed 4408 "
            "| errors | RSS MiB before → after (peak) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for server in chat:
            s = _get(results, "chat", server, "saturation")
            if not s:
                continue
            lines.append(
                f"| {server} | {_num(s['rate'])} | {_num(s['delivered'])} / "
                f"{_num(s['expected'])} | {_num(s['lost'])} | {_num(s['unacked'])} | "
                f"{_num(s['closed_too_slow'])} | {s['errors'] or '-'} | "
                f"{s['rss_before_kib'] / 1024:.0f} → {s['rss_after_kib'] / 1024:.0f} "
                f"({s['rss_peak_kib'] / 1024:.0f}) |")

    conns = _servers(results, "connections")
    if conns:
        raw_first = _get(results, "connections", RAW, "connects_per_s_first")
        lines += [
            "", "## Connections", "",
            "Sockets opened in batches (Sonor: authenticated, Bearer token; the raw app: plain). "
            "Memory per connection = RSS slope from the first batch to the last; idle CPU = "
            "the server's CPU time over an idle interval with every socket open "
            f"({_num(results['meta']['profile_values']['idle_seconds'])} s; 20 s holds "
            "every socket's keepalive ping once).", "",
            "| server | sockets | connects/s first batch | last batch | KiB per connection "
            "| idle CPU % | CPU ms per connect: server / generator |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for server in conns:
            c = _get(results, "connections", server)
            if "error" in c:
                continue
            lines.append(
                f"| {server} | {_num(c['sockets'])} | {_num(c['connects_per_s_first'])}"
                f"{_ratio(c['connects_per_s_first'], raw_first)} | "
                f"{_num(c['connects_per_s_last'])} | {_num(c['kib_per_connection'])} | "
                f"{c['idle_cpu_percent']:.1f} | {c['server_cpu_ms_per_connect']:.2f} / "
                f"{c['generator_cpu_ms_per_connect']:.2f} |")
            if c.get("refused"):
                lines.append(f"| | refused after {_num(c['refused']['after_sockets'])} of "
                             f"{_num(c['wanted'])}: {c['refused']['error']} | | | | | |")

    notify = _servers(results, "agency")
    if notify:
        lines += [
            "", "## Agency notifications (Sonor only)", "",
            "POST /api/agency/v1/notifications (Idempotency-Key) to citizens whose sockets are "
            "open; latency from the scheduled POST to `notify.new` on the socket.", "",
            f"| server | first step/s | socket p50 / p99 ms | POST p50 / p99 ms | at "
            f"{_num(AGENCY_TARGET)}/s: socket p50 / p99 ms, lost | held: persisted/s | "
            "delivered/s |", "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for server in notify:
            a = _get(results, "agency", server)
            if "error" in a:
                continue
            f, held = a["fixed"], [s for s in a["steps"] if s["held"]]
            best = held[-1] if held else {}
            at_rate = [s for s in a["steps"] if s["rate"] == AGENCY_TARGET]
            target = next((s for s in at_rate if s["held"]), at_rate[-1] if at_rate else None)
            at_target = (f"{_num(target['socket_p50_ms'])} / {_num(target['socket_p99_ms'])}, "
                         f"{_num(target['lost'] + target['refused'])}") if target \
                else "not reached"
            lines.append(
                f"| {server} | {_num(f['rate'])} | {_num(f['socket_p50_ms'])} / "
                f"{_num(f['socket_p99_ms'])} | {_num(f['post_p50_ms'])} / "
                f"{_num(f['post_p99_ms'])} | {at_target} | {_num(best.get('persisted_per_s'))} | "
                f"{_num(best.get('delivered_per_s'))} |")

    storm = _servers(results, "storm")
    if storm:
        lines += [
            "", "## Reconnect storm (Sonor only)", "",
            "The server is killed (SIGKILL) while messages are in flight and restarted; every "
            "socket reconnects after a random delay and resumes with `hello` and its last seq "
            "per room. Misses = seqs a socket never received between the first it saw and the "
            "room's last acknowledged one (must be 0).", "",
            "| server | sockets | restart s | all resumed after s | attempts | seqs checked | "
            "misses |", "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for server in storm:
            s = _get(results, "storm", server)
            if "error" in s:
                continue
            lines.append(
                f"| {server} | {_num(s['reconnected'])} / {_num(s['sockets'])} | "
                f"{s['restart_s']:.1f} | {_num(s['reconnect_all_s'])} | "
                f"{_num(s['reconnect_attempts'])} | {_num(s['seqs_checked'])} | "
                f"{_num(s['misses'])} |")
    return "\n".join(lines) + "\n"


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    chat = _servers(results, "chat")
    if chat:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, layout in zip(axes, ("rooms_of_10", "big_room"), strict=True):
            for server in chat:
                steps = sorted(_get(results, "chat", server, layout, "search", "steps") or [],
                               key=lambda s: s["rate"])
                points = [(s["offered_deliveries_per_s"], s["p99_ms"]) for s in steps
                          if s["p99_ms"] is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=server)
            ax.axhline(100, color="grey", linestyle="--", linewidth=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("offered deliveries/s")
            ax.set_ylabel("p99 latency, ms")
            ax.set_title(layout.replace("_", " "))
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "chat_p99.png", dpi=80)
        plt.close(fig)
        written.append("chat_p99.png")
    conns = [s for s in _servers(results, "connections")
             if "batches" in (_get(results, "connections", s) or {})]
    if conns:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for server in conns:
            batches = _get(results, "connections", server, "batches")
            axes[0].plot([b["sockets"] for b in batches], [b["rss_kib"] / 1024 for b in batches],
                         marker="o", label=server)
            axes[1].plot([b["sockets"] for b in batches[1:]],
                         [b["connects_per_s"] for b in batches[1:]], marker="o", label=server)
        axes[0].set_xlabel("open sockets")
        axes[0].set_ylabel("server RSS, MiB")
        axes[1].set_xlabel("open sockets (end of batch)")
        axes[1].set_ylabel("connects/s in the batch")
        axes[1].set_yscale("log")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "connections.png", dpi=80)
        plt.close(fig)
        written.append("connections.png")
    return written


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = markdown(results)
    images = plots(results, out)
    text += "".join(f"\n![{name}]({name})\n" for name in images)
    (out / "results.md").write_text(text)


def _median_cpu(results: dict[str, Any], server: str, layout: str) -> float | None:
    """The median server CPU µs per delivery over a layout's fixed-rate trials."""
    values = sorted(t["server_cpu_us_per_delivery"] for t in
                    _get(results, "chat", server, layout, "fixed_tries") or []
                    if t.get("server_cpu_us_per_delivery") is not None)
    return values[len(values) // 2] if values else None


def _cpu_per_delivery(results: dict[str, Any], server: str, layout: str) -> str:
    return _num(_median_cpu(results, server, layout))
