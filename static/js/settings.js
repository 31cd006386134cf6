// The settings page: copy buttons for the token and the snippets; confirm before rotating.
(function () {
  "use strict";

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

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy-from]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copyFrom);
    await copy(source.value !== undefined ? source.value : source.textContent);
    const label = button.textContent;
    button.textContent = "Copied ✓";
    setTimeout(() => (button.textContent = label), 1500);
  });

  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
