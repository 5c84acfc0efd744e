// The Models page's small extras; every page works without them.
"use strict";

// Copy buttons: data-copy names the element whose text (or value) goes to the clipboard.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  const text = "value" in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (err) {
    // no clipboard (an insecure origin): select it, so Ctrl+C copies
    const range = document.createRange();
    range.selectNodeContents(source);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => (button.textContent = "Copy"), 2000);
});

// Follow the log: fetch its tail every 2 s while the switch is on.
document.addEventListener("DOMContentLoaded", () => {
  const follow = document.getElementById("follow-log");
  const log = document.getElementById("log");
  if (!follow || !log) return;
  let timer = null;
  const refresh = async () => {
    const reply = await fetch(follow.dataset.logs, {
      headers: { "X-XSRFToken": follow.dataset.xsrf },
    });
    if (!reply.ok) return;
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = await reply.text();
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  follow.addEventListener("change", () => {
    clearInterval(timer);
    if (follow.checked) {
      refresh();
      timer = setInterval(refresh, 2000);
    }
  });
});

// Traffic charts: the model's totals every 5 s (GET .../metrics), drawn as rates between two
// readings. A total that goes down is a restarted serving process: that pair is skipped.
const POINTS = 60; // readings kept: five minutes

function quantile(before, after, q) {
  // the upper bound of the histogram bucket holding the q-th of the requests in between
  const counts = after.latency.map(([le, n], i) => [le, n - ((before.latency[i] || [])[1] || 0)]);
  const total = counts.length ? counts[counts.length - 1][1] : 0;
  if (total <= 0) return null;
  const found = counts.find(([, n]) => n >= q * total);
  return found && found[0] !== null ? found[0] * 1000 : null;
}

function draw(svg, values) {
  const shown = values.slice(-POINTS);
  const top = Math.max(...shown.map((v) => v || 0), 1e-9);
  const points = shown.map(
    (v, i) => `${(i * 300) / (POINTS - 1)},${58 - ((v || 0) / top) * 56}`,
  );
  svg.querySelector("polyline").setAttribute("points", points.join(" "));
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("traffic");
  if (!section) return;
  const series = { rate: [], errors: [], p95: [] };
  let last = null;
  const read = async () => {
    const reply = await fetch(section.dataset.metrics, {
      headers: { "X-XSRFToken": section.dataset.xsrf },
    });
    if (!reply.ok) {
      document.getElementById("metrics-totals").textContent = `unavailable (HTTP ${reply.status})`;
      return;
    }
    const now = await reply.json();
    document.getElementById("metrics-totals").textContent =
      `${now.requests} prediction requests, ${now.errors} errors, ${now.rows} rows predicted`;
    if (last && now.requests >= last.requests && now.time > last.time) {
      const seconds = now.time - last.time;
      const values = {
        rate: (now.requests - last.requests) / seconds,
        errors: (now.errors - last.errors) / seconds,
        p95: quantile(last, now, 0.95),
      };
      for (const key of Object.keys(series)) {
        series[key].push(values[key]);
        const value = values[key];
        document.getElementById(`metrics-${key}`).textContent =
          value === null ? "no requests" : value.toFixed(key === "p95" ? 1 : 2);
        draw(document.getElementById(`chart-${key}`), series[key]);
      }
    }
    last = now;
  };
  read();
  setInterval(read, 5000);
});
