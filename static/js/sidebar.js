// The chat's conversation sidebar: on phones a drawer (☰ opens it; ✕, Escape or a tap beside it
// closes it), and on every size the open conversation scrolled into view. Search and "more" are htmx.
(function () {
  "use strict";

  const sidebar = document.getElementById("sidebar");
  if (!sidebar) return;
  const layout = sidebar.parentElement;
  const backdrop = document.createElement("div");
  backdrop.className = "sidebar-backdrop";
  backdrop.hidden = true;
  layout.append(backdrop);

  function toggles() {
    return Array.from(document.querySelectorAll(".sidebar-toggle"));
  }

  function setOpen(open, returnFocus) {
    sidebar.classList.toggle("open", open);
    backdrop.hidden = !open;
    toggles().forEach((button) => button.setAttribute("aria-expanded", String(open)));
    if (open) {
      const first = sidebar.querySelector("[aria-current=page]") || sidebar.querySelector("a, button, input");
      if (first) first.focus({ preventScroll: false });
    } else if (returnFocus) {
      const toggle = toggles().find((button) => button.offsetParent !== null);
      if (toggle) toggle.focus();
    }
  }

  document.addEventListener("click", (event) => {
    // The thread header (and its ☰) is swapped in after the first send: listen on the document.
    if (event.target.closest(".sidebar-toggle")) setOpen(!sidebar.classList.contains("open"), false);
    else if (event.target.closest(".sidebar-close")) setOpen(false, true);
  });
  backdrop.addEventListener("click", () => setOpen(false, true));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && sidebar.classList.contains("open")) {
      event.preventDefault();
      setOpen(false, true);
    }
  });

  const list = document.getElementById("conversation-list");
  const open = list && list.querySelector("[aria-current=page]");
  if (open) open.scrollIntoView({ block: "nearest" });
})();
