// The leak banner above locust's own web UI (served by loadtests/leak_view.py at
// ./leaks/banner.js and added to the index page). It polls ./leaks once a second and shows the
// leak count and rate, the server's live ctxlocal entries and, once the run has stopped, the
// verdict. Plain DOM outside locust's React root, so locust's UI is left as it is.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const COLOURS = {
    idle: ["#eceff1", "#263238"], running: ["#fff8e1", "#5d4037"], leaking: ["#ffebee", "#b71c1c"],
    pass: ["#2e7d32", "#ffffff"], fail: ["#c62828", "#ffffff"],
  };

  const banner = document.createElement("div");
  banner.id = "leak-banner";
  banner.setAttribute("role", "status");
  banner.style.cssText = "font: 14px/1.5 sans-serif; padding: 8px 16px; display: flex; " +
    "flex-wrap: wrap; gap: 4px 24px; align-items: baseline; border-bottom: 1px solid #0002;";
  document.body.prepend(banner);

  function field(id, label) {
    const span = document.createElement("span");
    span.innerHTML = `${label} <strong id="${id}">…</strong>`;
    banner.appendChild(span);
    return span.querySelector("strong");
  }
  const verdict = document.createElement("strong");
  verdict.id = "leak-verdict";
  verdict.style.cssText = "flex-basis: 100%; font-size: 16px;";
  const count = field("leak-count", "Leaks");
  const rate = field("leak-rate", "Leaks/s");
  const share = field("leak-share", "Share of requests");
  const kinds = field("leak-kinds", "Kinds");
  const live = field("leak-live", "Server live ctxlocal entries");
  banner.appendChild(verdict);

  function paint(state) {
    const [background, colour] = COLOURS[state];
    banner.dataset.state = state;
    banner.style.background = background;
    banner.style.color = colour;
  }

  function liveText(reading) {
    if (reading.total === null) return `unavailable (${reading.error})`;
    const parts = Object.entries(reading.by_local).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`);
    return parts.length ? `${reading.total} (${parts.join(", ")})` : String(reading.total);
  }

  function render(s) {
    count.textContent = s.leaks.toLocaleString("en");
    rate.textContent = s.leak_rate.toLocaleString("en");
    share.textContent = s.leak_share;
    kinds.textContent = String(s.kinds);
    live.textContent = liveText(s.live);
    if (s.verdict) {
      verdict.textContent = s.verdict.text;
      paint(s.verdict.passed ? "pass" : "fail");
    } else {
      verdict.textContent = s.state === "ready" ? "No run yet: start a swarm." :
        `Run ${s.state}: the verdict comes when it stops` +
        (s.expect_leaks ? " (negative control: leaks are expected)." : ".");
      paint(s.state === "ready" ? "idle" : (s.leaks && !s.expect_leaks ? "leaking" : "running"));
    }
  }

  async function poll() {
    try {
      const response = await fetch("./leaks", { cache: "no-store" });
      render(await response.json());
    } catch (error) {
      verdict.textContent = `No answer from locust: ${error}`;
      paint("idle");
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
