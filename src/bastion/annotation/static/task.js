// The task page: show each decision step once the previous answer leads to it, cite selected
// text as evidence, reveal blurred images on request, and answer with the keyboard. The form
// also posts without this script; the server rebuilds the path and validates it either way.
"use strict";
(function () {
  const form = document.getElementById("task-form");
  const textEl = document.getElementById("item-text");
  const itemText = textEl ? textEl.textContent : "";

  // Character offsets as Python counts them (code points, not UTF-16 units).
  const codePoints = (s) => Array.from(s).length;

  function steps(category) { return Array.from(category.querySelectorAll("fieldset.step")); }
  function checked(step) { return step.querySelector("input[type=radio]:checked"); }

  // Walk the path from the first step; show the steps on it and hide the rest.
  function update(category) {
    const all = steps(category);
    const byId = Object.fromEntries(all.map((s) => [s.dataset.step, s]));
    const onPath = new Set();
    let step = all.find((s) => s.dataset.first === "true");
    let verdict = null, rule = null;
    while (step && !onPath.has(step)) {
      onPath.add(step);
      const answer = checked(step);
      if (!answer) break;
      if (answer.dataset.verdict) { verdict = answer.dataset.verdict; rule = answer.dataset.rule; break; }
      step = byId[answer.dataset.next];
    }
    all.forEach((s) => { s.hidden = !onPath.has(s); s.classList.remove("current"); });
    const open = all.find((s) => onPath.has(s) && !checked(s));
    const current = open || Array.from(onPath).pop();
    if (current) current.classList.add("current");
    const k = category.dataset.k;
    const outcome = document.getElementById("outcome-" + k);
    const violating = verdict === "violating";
    outcome.className = "outcome" + (verdict ? (violating ? " violates" : " ok") : "");
    outcome.textContent = verdict
      ? (violating ? "Outcome: violates" + (rule ? " (rule " + rule + ")" : "") : "Outcome: does not violate")
      : "";
    category.querySelector(".violating-only").hidden = !violating;
  }

  // The category the keys act on: the one holding the focus, else the first one unfinished.
  function activeCategory() {
    const focused = document.activeElement && document.activeElement.closest &&
      document.activeElement.closest("fieldset.category");
    if (focused) return focused;
    const unfinished = categories.find((c) => !document.getElementById("outcome-" + c.dataset.k).textContent);
    return unfinished || categories[0];
  }
  function currentStep(category) { return category.querySelector("fieldset.step.current") || steps(category)[0]; }

  function spansOf(step) { return JSON.parse(step.querySelector(".spans-field").value || "[]"); }
  function setSpans(step, spans) {
    step.querySelector(".spans-field").value = JSON.stringify(spans);
    const list = step.querySelector("ul.spans");
    if (!list) return;
    list.replaceChildren();
    spans.forEach(([start, end], n) => {
      const li = document.createElement("li");
      li.textContent = "“" + Array.from(itemText).slice(start, end).join("") + "”";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove evidence " + (n + 1));
      remove.addEventListener("click", () => { const s = spansOf(step); s.splice(n, 1); setSpans(step, s); });
      li.appendChild(remove);
      list.appendChild(li);
    });
  }

  // The selected part of the item's text as [start, end) code-point offsets, or null.
  function selectedSpan() {
    const selection = window.getSelection();
    if (!textEl || !selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    if (!textEl.contains(range.startContainer) || !textEl.contains(range.endContainer)) return null;
    const before = document.createRange();
    before.selectNodeContents(textEl);
    before.setEnd(range.startContainer, range.startOffset);
    const start = codePoints(before.toString());
    const end = start + codePoints(range.toString());
    return end > start ? [start, end] : null;
  }

  function addEvidence(step) {
    const span = selectedSpan();
    const status = step.querySelector("ul.spans");
    if (!span) { if (status) status.setAttribute("data-empty", "select some text first"); return false; }
    const spans = spansOf(step);
    if (!spans.some(([a, b]) => a === span[0] && b === span[1])) spans.push(span);
    setSpans(step, spans);
    window.getSelection().removeAllRanges();
    return true;
  }

  function reveal(button) {
    const img = button.closest("figure").querySelector("img");
    const src = img.dataset.src;
    img.src = src + (src.includes("?") ? "&" : "?") + "reveal=1";
    img.classList.remove("blurred");
    img.alt = img.alt.replace("; sensitive regions blurred", " (revealed)");
    button.setAttribute("aria-pressed", "true");
    button.disabled = true;
  }
  document.querySelectorAll("button.reveal").forEach((b) => b.addEventListener("click", () => reveal(b)));

  if (!form) return;
  const categories = Array.from(form.querySelectorAll("fieldset.category"));

  // Put back what the person typed when the server refused the form.
  const values = JSON.parse(form.dataset.values || "{}");
  for (const [name, value] of Object.entries(values)) {
    if (name.endsWith(".spans")) {
      const field = form.querySelector(`input[name="${CSS.escape(name)}"]`);
      if (field) { try { setSpans(field.closest("fieldset.step"), JSON.parse(value || "[]")); } catch (e) { /* ignore */ } }
    } else if (name.endsWith(".rules")) {
      (Array.isArray(value) ? value : [value]).forEach((v) => {
        const box = form.querySelector(`input[name="${CSS.escape(name)}"][value="${CSS.escape(v)}"]`);
        if (box) box.checked = true;
      });
    } else {
      const radio = form.querySelector(`input[type=radio][name="${CSS.escape(name)}"][value="${CSS.escape(value)}"]`);
      if (radio) { radio.checked = true; continue; }
      const field = form.elements.namedItem(name);
      if (field && "value" in field) field.value = value;
    }
  }

  categories.forEach((c) => {
    c.addEventListener("change", () => update(c));
    c.querySelectorAll("button.add-evidence").forEach((b) =>
      b.addEventListener("click", () => addEvidence(b.closest("fieldset.step"))));
    update(c);
  });
  const problems = document.getElementById("problems");
  if (problems) problems.focus();

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    const t = event.target;
    const typing = t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement ||
      (t instanceof HTMLInputElement && !["radio", "checkbox"].includes(t.type));
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const category = activeCategory();
    const step = currentStep(category);
    if (/^[1-9]$/.test(event.key)) {
      const radios = step.querySelectorAll("input[type=radio]");
      const radio = radios[Number(event.key) - 1];
      if (!radio) return;
      event.preventDefault();
      radio.checked = true;
      update(category);
      const next = currentStep(category).querySelector("input[type=radio]:checked") ? radio : currentStep(category).querySelector("input[type=radio]");
      next.focus();
    } else if (event.key === "e" || event.key === "E") {
      if (addEvidence(step)) event.preventDefault();
    } else if (event.key === "r" || event.key === "R") {
      const button = document.querySelector("button.reveal:not([disabled])");
      if (button) { event.preventDefault(); reveal(button); }
    }
  });
})();
