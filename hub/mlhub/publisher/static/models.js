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
