// Hover a run's mark to see it, click to open it in MLflow. "Refit now" posts with the double-submit CSRF token;
// its outcome stays on screen: on a new version the law's section is redrawn in place and the message stays.
(function () {
  "use strict";
  const body = document.body;
  const cookie = (name) => (document.cookie.split("; ").find((c) => c.startsWith(name + "=")) || "").split("=")[1] || "";

  function bindPlots(root) {
    root.querySelectorAll("figure.plot").forEach((plot) => {
      const tip = plot.querySelector(".tip");
      if (!tip) return;
      plot.querySelectorAll("svg [data-run-id]").forEach((mark) => {
        mark.addEventListener("mousemove", (event) => {
          const box = plot.getBoundingClientRect();
          tip.textContent = mark.dataset.label || mark.dataset.runId;
          tip.hidden = false;
          const left = Math.min(event.clientX - box.left + 12, box.width - tip.offsetWidth - 4);
          tip.style.left = Math.max(0, left) + "px";
          tip.style.top = (event.clientY - box.top - 30) + "px";
        });
        mark.addEventListener("mouseleave", () => { tip.hidden = true; });
        mark.addEventListener("click", () => { if (mark.dataset.href) window.location.href = mark.dataset.href; });
      });
    });
  }

  function show(section, kind, text) {
    const status = section.querySelector(".refit-status");
    status.className = "refit-status " + kind;
    status.textContent = "";
    const message = document.createElement("span");
    message.className = "message";
    message.textContent = text;
    status.appendChild(message);
    if (kind !== "running") {
      const close = document.createElement("button");
      close.className = "dismiss";
      close.type = "button";
      close.textContent = "Dismiss";
      close.addEventListener("click", () => { status.hidden = true; });
      status.appendChild(close);
    }
    status.hidden = false;
  }

  async function redraw(law) {
    // The page as the server draws it now; only this law's section is swapped, so the message can stay on it.
    const url = window.location.pathname + "?law=" + encodeURIComponent(law);  // the page that holds the law
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return null;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("law-" + law);
    const current = document.getElementById("law-" + law);
    if (!fresh || !current) return null;
    current.replaceWith(fresh);
    bind(fresh);
    return fresh;
  }

  function outcome(data, status) {
    if (status === 200 && data.status === "registered")
      return ["done", "Registered version " + data.version + " from " + data.n_runs + " runs; the plots and numbers below are its fit."];
    if (status === 200 && data.status === "unchanged")
      return ["done", "No new version: version " + data.version + " already covers these " + data.n_runs + " runs."];
    if (status === 200) return ["done", "Refit " + data.status + (data.version ? " (version " + data.version + ")" : "") + "."];
    return ["failed", "Refit failed (HTTP " + status + "): " + (data.error || data.reason || "no reason given")];
  }

  function bindRefit(section) {
    const button = section.querySelector("button.refit");
    if (!button) return;
    button.addEventListener("click", async () => {
      const law = button.dataset.law;
      button.disabled = true;
      show(section, "running", "Refitting " + law + "… (reads every run of the law and fits it; seconds to a minute)");
      const headers = { "Content-Type": "application/json" };
      headers[body.dataset.csrfHeader] = cookie("tl_csrf");
      let kind, text;
      try {
        const response = await fetch(body.dataset.prefix + "/api/refit", {
          method: "POST", headers: headers, credentials: "same-origin", body: JSON.stringify({ law: law }),
        });
        const data = await response.json().catch(() => ({}));
        [kind, text] = outcome(data, response.status);
      } catch (err) {
        [kind, text] = ["failed", "Refit request failed: " + err];
      }
      let target = section;
      if (kind === "done") target = (await redraw(law).catch(() => null)) || section;
      target.querySelector("button.refit").disabled = false;
      show(target, kind, text);
    });
  }

  function localTimes(root) {
    root.querySelectorAll("td.created[data-ms]").forEach((cell) => {
      const ms = Number(cell.dataset.ms);
      if (ms > 0) cell.textContent = new Date(ms).toLocaleString();
    });
  }

  function bind(root) { bindPlots(root); localTimes(root); if (root.matches && root.matches("section.law")) bindRefit(root); }

  // A law's link (#law-<law>, as version descriptions give it) whose section is on another page: open that page.
  function followLaw() {
    const wanted = decodeURIComponent(window.location.hash.replace(/^#law-/, ""));
    const asked = new URLSearchParams(window.location.search).get("law") === wanted;  // asked once already: no loop
    if (window.location.hash.startsWith("#law-") && !asked && !document.getElementById("law-" + wanted))
      window.location.replace(window.location.pathname + "?law=" + encodeURIComponent(wanted) + window.location.hash);
  }
  followLaw();
  window.addEventListener("hashchange", followLaw);

  bindPlots(document);
  localTimes(document);
  document.querySelectorAll("section.law").forEach(bindRefit);
})();
