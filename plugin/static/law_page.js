// Hover a point to see its run; click it to open the run. "Refit now" posts with the double-submit CSRF token.
(function () {
  "use strict";
  const body = document.body;
  const cookie = (name) => (document.cookie.split("; ").find((c) => c.startsWith(name + "=")) || "").split("=")[1] || "";
  document.querySelectorAll(".plot").forEach((plot) => {
    const tip = plot.querySelector(".tip");
    plot.querySelectorAll("circle.pt").forEach((pt) => {
      pt.addEventListener("mouseenter", () => {
        tip.textContent = pt.dataset.label;
        tip.style.left = (Number(pt.getAttribute("cx")) + 10) + "px";
        tip.style.top = (Number(pt.getAttribute("cy")) - 24) + "px";
        tip.hidden = false;
      });
      pt.addEventListener("mouseleave", () => { tip.hidden = true; });
      pt.addEventListener("click", () => { if (pt.dataset.href) window.location.href = pt.dataset.href; });
    });
  });
  document.querySelectorAll("button.refit").forEach((button) => {
    button.addEventListener("click", async () => {
      const status = button.parentElement.querySelector(".refit-status");
      button.disabled = true;
      status.textContent = "refitting…";
      const url = body.dataset.prefix + "/api/refit";
      const headers = { "Content-Type": "application/json" };
      headers[body.dataset.csrfHeader] = cookie("tl_csrf");
      try {
        const response = await fetch(url, {
          method: "POST", headers: headers, credentials: "same-origin", body: JSON.stringify({ law: button.dataset.law }),
        });
        const data = await response.json().catch(() => ({}));
        if (!response.ok) {
          status.textContent = "refit failed (" + response.status + "): " + (data.error || data.reason || "");
          return;
        }
        status.textContent = data.status + (data.version ? " (version " + data.version + ")" : "") + "; reloading";
        window.location.reload();
      } finally { button.disabled = false; }
    });
  });
})();
