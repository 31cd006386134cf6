// The gallery: the shared viewer (viewer.js) over the grid, live updates after favourite/delete, and
// keeping the scrolled-through pages when the user comes back to the page.
(function () {
  "use strict";

  const grid = document.getElementById("grid");
  const viewer = window.NanoViewer;

  function tiles() {
    return Array.from(document.querySelectorAll("#grid .tile-link"));
  }

  // At the end of what is loaded, the viewer's "next" loads the next page (if any).
  function loadMore() {
    const more = document.querySelector("#more a");
    if (more) more.click();
  }

  // --- selecting several: the tiles' checkboxes belong to the selection form -----------------
  const bar = document.getElementById("selection-form");
  let anchor = null; // the last box clicked: shift-click selects from it

  function boxes() {
    return Array.from(document.querySelectorAll("#grid .tile-select"));
  }

  // On a phone the boxes stay off the images until Select is tapped (app.css).
  const toggle = document.getElementById("select-toggle");
  function choosing() {
    return Boolean(grid && grid.classList.contains("choosing"));
  }
  function setChoosing(on) {
    if (!grid || !toggle) return;
    grid.classList.toggle("choosing", on);
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Done" : "Select";
  }
  if (toggle) toggle.addEventListener("click", () => setChoosing(!choosing()));

  function syncSelection() {
    const chosen = boxes().filter((box) => box.checked);
    if (!bar) return;
    bar.hidden = chosen.length === 0;
    document.getElementById("selection-count").textContent = String(chosen.length);
    if (grid) grid.classList.toggle("selecting", chosen.length > 0);
    boxes().forEach((box) => box.closest(".tile").classList.toggle("selected", box.checked));
  }

  function choose(box, event) {
    if (event.shiftKey && anchor && anchor !== box) {
      const all = boxes();
      const [from, to] = [all.indexOf(anchor), all.indexOf(box)].sort((a, b) => a - b);
      all.slice(from, to + 1).forEach((other) => (other.checked = anchor.checked));
    }
    anchor = box;
    syncSelection();
  }

  document.addEventListener("click", (event) => {
    const box = event.target.closest(".tile-select");
    if (box) return choose(box, event); // the box toggled itself
    const link = event.target.closest(".tile-link");
    if (!link || event.metaKey || event.ctrlKey) return;
    const tileBox = link.closest(".tile").querySelector(".tile-select");
    // While selecting (or with Shift), a click on a tile selects it rather than opening it.
    if (tileBox && (event.shiftKey || choosing() || boxes().some((other) => other.checked))) {
      event.preventDefault();
      tileBox.checked = !tileBox.checked;
      return choose(tileBox, event);
    }
    if (viewer) {
      event.preventDefault();
      viewer.open(link, { items: tiles, onEnd: loadMore });
    }
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches(".tile-select")) syncSelection(); // Space on a focused box
  });
  if (bar) {
    bar.addEventListener("click", (event) => {
      const control = event.target.closest("[data-selection]");
      if (!control) return;
      boxes().forEach((box) => (box.checked = control.dataset.selection === "all"));
      if (control.dataset.selection === "clear") setChoosing(false);
      syncSelection();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !bar.hidden && !(viewer && viewer.isOpen)) {
        boxes().forEach((box) => (box.checked = false));
        setChoosing(false);
        syncSelection();
      }
    });
    document.body.addEventListener("htmx:afterSwap", syncSelection); // boxes of a page loaded while selecting
    syncSelection(); // boxes the browser kept checked on back/reload
  }

  document.body.addEventListener("imageDeleted", (event) => {
    const tile = document.getElementById("tile-" + event.detail.id);
    if (tile) tile.remove();
    const count = document.getElementById("gallery-count");
    if (count) count.textContent = count.textContent.replace(/^\d+/, (n) => String(Math.max(0, Number(n) - 1)));
  });

  // Filters apply as soon as a choice changes; on a phone the secondary ones fold away unless in use.
  const filters = document.querySelector("form.filters");
  if (filters) {
    filters.addEventListener("change", (event) => {
      if (event.target.matches("select, input[type=checkbox]")) filters.requestSubmit();
    });
    const more = filters.querySelector(".filter-more");
    if (more && window.matchMedia("(max-width: 760px)").matches && !/\(on\)/.test(more.querySelector("summary").textContent)) {
      more.open = false;
    }
  }

  document.body.addEventListener("imageFavorited", (event) => {
    const tile = document.getElementById("tile-" + event.detail.id);
    const badge = tile && tile.querySelector(".tile-fav");
    if (badge) badge.hidden = !event.detail.favorite;
  });

  // --- keep the place: remember how far the user scrolled and restore it on return ---------------
  if (!grid) return;
  const key = "gallery:" + location.pathname + location.search;

  function remember() {
    // `through` is the cursor of the last loaded tile: on the "more" sentinel, or the end marker.
    const marker = document.getElementById("more") || document.getElementById("grid-end");
    const through = marker ? marker.dataset.next || marker.dataset.last : null;
    const state = { scrollY: window.scrollY, count: tiles().length, through };
    sessionStorage.setItem(key, JSON.stringify(state));
  }

  let pending = null;
  window.addEventListener("scroll", () => {
    clearTimeout(pending);
    pending = setTimeout(remember, 200);
  }, { passive: true });
  document.body.addEventListener("htmx:afterSwap", remember);

  window.addEventListener("pageshow", (event) => {
    if (event.persisted) return; // restored from the back/forward cache as it was
    const navigation = performance.getEntriesByType("navigation")[0];
    if (!navigation || !["back_forward", "reload"].includes(navigation.type)) return; // a fresh visit starts at the top
    const saved = JSON.parse(sessionStorage.getItem(key) || "null");
    if (!saved || !saved.through || saved.count <= tiles().length) {
      if (saved && saved.scrollY) window.scrollTo(0, saved.scrollY);
      return;
    }
    const url = new URL(grid.dataset.galleryUrl, location.href);
    url.searchParams.set("through", saved.through);
    url.searchParams.set("fragment", "items");
    htmx.ajax("GET", url.pathname + url.search, { target: grid, swap: "innerHTML" }).then(() => {
      window.scrollTo(0, saved.scrollY);
    });
  });
})();
