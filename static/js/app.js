// Every page (base.html): confirm a destructive form before it posts, and copy buttons.
(function () {
  "use strict";

  // The confirm sits on the form, or on the one button of a form that needs it (the gallery's Delete).
  document.addEventListener("submit", (event) => {
    const message = (event.submitter && event.submitter.dataset.confirm) || event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      // No clipboard API (plain http on another host): copy through a selection instead.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
  }

  // data-copy="text", or data-copy-from="id" of an input or element whose text to copy; the button
  // says "Copied ✓" for a moment, or its data-copied label.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy], [data-copy-from]");
    if (!button) return;
    const source = button.dataset.copyFrom && document.getElementById(button.dataset.copyFrom);
    await copy(source ? (source.value !== undefined ? source.value : source.textContent) : button.dataset.copy);
    const label = button.textContent;
    button.textContent = button.dataset.copied || "Copied ✓";
    setTimeout(() => (button.textContent = label), 1500);
  });
})();
