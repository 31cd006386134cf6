// The gallery: a lightbox over the grid (keyboard: ←/→ to move, Esc to close), live updates after
// favourite/delete, and keeping the scrolled-through pages when the user comes back to the page.
(function () {
  "use strict";

  const grid = document.getElementById("grid");
  const dialog = document.getElementById("lightbox");
  const body = document.getElementById("lightbox-body");
  let current = null; // the tile link the lightbox shows
  let opener = null; // where focus returns on close

  function tiles() {
    return Array.from(document.querySelectorAll("#grid .tile-link"));
  }

  function show(link) {
    current = link;
    body.setAttribute("aria-busy", "true");
    htmx.ajax("GET", link.getAttribute("href"), { target: body, swap: "innerHTML" }).then(() => {
      body.removeAttribute("aria-busy");
      const first = body.querySelector("a, button");
      if (first) first.focus({ preventScroll: true });
    });
    if (!dialog.open) dialog.showModal();
    document.body.classList.add("lightbox-open");
  }

  function step(offset) {
    const all = tiles();
    const index = all.indexOf(current);
    const next = all[index + offset];
    if (next) {
      show(next);
      next.scrollIntoView({ block: "nearest" });
    } else if (offset > 0) {
      // At the end of what is loaded: load the next page (if any) by revealing the sentinel.
      const more = document.querySelector("#more a");
      if (more) more.click();
    }
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest(".tile-link");
    if (link && !event.metaKey && !event.ctrlKey && !event.shiftKey) {
      event.preventDefault();
      opener = link;
      show(link);
      return;
    }
    const control = event.target.closest("[data-lightbox]");
    if (control) {
      const action = control.dataset.lightbox;
      if (action === "close") dialog.close();
      else step(action === "next" ? 1 : -1);
    }
  });

  if (dialog) {
    dialog.addEventListener("keydown", (event) => {
      if (event.target.matches("input, textarea, select")) return;
      if (event.key === "ArrowRight") step(1);
      else if (event.key === "ArrowLeft") step(-1);
    });
    // A click on the backdrop (outside the content) closes, as people expect of a lightbox.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => {
      document.body.classList.remove("lightbox-open");
      body.replaceChildren();
      if (opener && document.contains(opener)) opener.focus();
    });
  }

  document.body.addEventListener("imageDeleted", (event) => {
    const tile = document.getElementById("tile-" + event.detail.id);
    const all = tiles();
    const index = current ? all.indexOf(current) : -1;
    if (tile) tile.remove();
    const count = document.getElementById("gallery-count");
    if (count) count.textContent = count.textContent.replace(/^\d+/, (n) => String(Math.max(0, Number(n) - 1)));
    if (dialog && dialog.open) {
      const rest = tiles();
      const next = rest[Math.min(index, rest.length - 1)];
      if (next) {
        opener = next;
        show(next);
      } else dialog.close();
    }
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
