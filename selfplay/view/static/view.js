// selfplay view: the only script. Steps through an episode with the keys and the buttons (the
// buttons are links, so every step also works without it), and keeps the URL on the step shown.
(function () {
  "use strict";

  function setupStepper() {
    var nav = document.getElementById("stepper");
    var container = document.getElementById("steps");
    if (!nav || !container) return;
    var sections = Array.prototype.slice.call(container.querySelectorAll("[data-step]"));
    var n = sections.length;
    if (!n) return;
    var cumulative = container.dataset.mode === "cumulative";
    var current = parseInt(nav.dataset.current, 10) || 1;
    var buttons = {
      first: document.getElementById("step-first"),
      prev: document.getElementById("step-prev"),
      next: document.getElementById("step-next"),
      last: document.getElementById("step-last")
    };

    function urlOf(k) { return sections[k - 1].dataset.url; }

    function show(k, focusStep) {
      k = Math.max(1, Math.min(n, k));
      current = k;
      sections.forEach(function (el) {
        var i = parseInt(el.dataset.step, 10);
        el.hidden = cumulative ? i > k : i !== k;
        el.classList.toggle("current", i === k);
      });
      document.getElementById("step-number").textContent = String(k);
      nav.dataset.current = String(k);
      buttons.prev.href = urlOf(Math.max(1, k - 1));
      buttons.next.href = urlOf(Math.min(n, k + 1));
      buttons.first.classList.toggle("disabled", k === 1);
      buttons.prev.classList.toggle("disabled", k === 1);
      buttons.next.classList.toggle("disabled", k === n);
      buttons.last.classList.toggle("disabled", k === n);
      if (window.history && window.history.replaceState) {
        window.history.replaceState(null, "", urlOf(k));
      }
      if (focusStep && cumulative) {
        sections[k - 1].scrollIntoView({block: "nearest"});
      }
    }

    function go(delta) { show(current + delta, true); }

    buttons.first.addEventListener("click", function (e) { e.preventDefault(); show(1, true); });
    buttons.prev.addEventListener("click", function (e) { e.preventDefault(); go(-1); });
    buttons.next.addEventListener("click", function (e) { e.preventDefault(); go(1); });
    buttons.last.addEventListener("click", function (e) { e.preventDefault(); show(n, true); });

    document.addEventListener("keydown", function (e) {
      var tag = (e.target && e.target.tagName) || "";
      if (e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|SELECT|TEXTAREA)$/.test(tag)) return;
      var handled = true;
      switch (e.key) {
        case "ArrowRight": case "l": case "j": go(1); break;
        case "ArrowLeft": case "h": case "k": go(-1); break;
        case "Home": show(1, true); break;
        case "End": show(n, true); break;
        case "[": follow("episode-previous"); break;
        case "]": follow("episode-next"); break;
        default: handled = false;
      }
      if (handled) e.preventDefault();
    });

    show(current, false);
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link) window.location.href = link.href;
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupStepper);
  } else {
    setupStepper();
  }
})();
