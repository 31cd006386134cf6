// The image viewer, shared by the gallery and the chat: open an image, step through the others of
// the page with ←/→, zoom into the original (Z, a click, the wheel or a pinch; drag to pan), compare
// two side by side (C pins the one shown; step to another), Esc closes. Pages open it with NanoViewer.open(link, {items, onEnd}); in the
// chat it hooks the images (.result[data-image-id]) itself.
window.NanoViewer = (function () {
  "use strict";

  const dialog = document.getElementById("lightbox");
  if (!dialog) return null;
  const body = document.getElementById("lightbox-body");
  const pinnedPane = document.getElementById("viewer-pinned");
  const zoomButton = dialog.querySelector("[data-lightbox=zoom]");
  let items = () => [];
  let onEnd = null;
  let current = null; // the element (tile link, chat figure) shown
  let opener = null; // where focus returns on close
  let pinned = null; // {id, src, prompt} of the image pinned for comparison

  function detailsUrl(element) {
    return element.dataset.viewerUrl || element.getAttribute("href");
  }

  function show(element, aside) {
    if (!aside) current = element; // an image opened from the lineage doesn't change the place in the list
    setZoom(false);
    body.setAttribute("aria-busy", "true");
    htmx.ajax("GET", detailsUrl(element), { target: body, swap: "innerHTML" });
    if (!dialog.open) dialog.showModal();
    document.body.classList.add("lightbox-open");
  }

  function open(element, options) {
    items = options.items;
    onEnd = options.onEnd || null;
    opener = options.opener || element;
    show(element);
  }

  function step(offset) {
    const all = items();
    const next = all[all.indexOf(current) + offset];
    if (next) {
      show(next);
      next.scrollIntoView({ block: "nearest" });
    } else if (offset > 0 && onEnd) onEnd();
  }

  // --- zoom: the original's pixels (not the display copy), around a point, panned by dragging ------
  // The image is laid out at its natural size and placed by a transform: scale 1 is one pixel of
  // the original per CSS pixel. `view` is null when not zoomed.
  let view = null; // {img, scale, x, y, fit}
  const MAX_SCALE = 8;

  function frame() {
    return body.querySelector(".lightbox-image");
  }

  function place() {
    view.img.style.transform = "translate(" + view.x + "px, " + view.y + "px) scale(" + view.scale + ")";
  }

  // Scale to `scale`, keeping the frame's point (px, py) over the same pixel of the image.
  function zoomAt(scale, px, py) {
    const next = Math.min(Math.max(scale, view.fit), MAX_SCALE);
    view.x = px - ((px - view.x) * next) / view.scale;
    view.y = py - ((py - view.y) * next) / view.scale;
    view.scale = next;
    place();
  }

  // Zoom in at the frame's point (px, py), to `scale` (1: the original's pixels).
  async function zoomIn(px, py, scale) {
    const box = frame();
    const img = box && box.querySelector("img");
    if (!img || view) return;
    const shown = img.getBoundingClientRect();
    const outer = box.getBoundingClientRect();
    if (img.dataset.original && !img.src.endsWith(img.dataset.original)) {
      img.src = img.dataset.original;
      try {
        await img.decode();
      } catch (error) {
        return; // the original can't be read: stay on the display copy
      }
    }
    setZoom(true);
    const fit = shown.width / img.naturalWidth;
    view = { img, fit, scale: fit, x: shown.left - outer.left, y: shown.top - outer.top };
    place();
    zoomAt(scale === undefined ? 1 : scale, px === undefined ? outer.width / 2 : px, py === undefined ? outer.height / 2 : py);
  }

  function setZoom(on) {
    dialog.classList.toggle("zoomed", on);
    if (zoomButton) zoomButton.setAttribute("aria-pressed", String(on));
    if (!on && view) {
      view.img.style.transform = "";
      view = null;
    }
  }

  function toggleZoom(px, py) {
    if (view || dialog.classList.contains("zoomed")) setZoom(false);
    else zoomIn(px, py);
  }

  function framePoint(event) {
    const outer = frame().getBoundingClientRect();
    return [event.clientX - outer.left, event.clientY - outer.top];
  }

  body.addEventListener("wheel", (event) => {
    if (!event.target.closest(".lightbox-image")) return;
    event.preventDefault();
    const [px, py] = framePoint(event);
    const factor = Math.exp(-event.deltaY * 0.0015);
    if (view) zoomAt(view.scale * factor, px, py);
    else if (factor > 1) zoomIn(px, py, 0); // from the fitted size, growing with the wheel
  }, { passive: false });

  // Drag pans; two fingers pinch. A press that didn't move is a click (it toggles the zoom).
  const pointers = new Map();
  let moved = false;
  body.addEventListener("pointerdown", (event) => {
    if (!event.target.closest(".lightbox-image img")) return;
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    event.target.setPointerCapture(event.pointerId);
    if (pointers.size === 1) moved = false;
    if (pointers.size === 2 && !view) {
      const [[ax, ay], [bx, by]] = Array.from(pointers.values());
      const outer = frame().getBoundingClientRect();
      zoomIn((ax + bx) / 2 - outer.left, (ay + by) / 2 - outer.top, 0);
    }
  });
  body.addEventListener("pointermove", (event) => {
    const last = pointers.get(event.pointerId);
    if (!last) return;
    const before = Array.from(pointers.values());
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    const dx = event.clientX - last[0];
    const dy = event.clientY - last[1];
    if (Math.abs(dx) + Math.abs(dy) > 0) moved = moved || Math.hypot(dx, dy) > 3;
    if (!view) return;
    if (pointers.size === 1) {
      view.x += dx;
      view.y += dy;
      place();
    } else if (pointers.size === 2) {
      const after = Array.from(pointers.values());
      const spread = (points) => Math.hypot(points[0][0] - points[1][0], points[0][1] - points[1][1]);
      const outer = frame().getBoundingClientRect();
      const mid = [(after[0][0] + after[1][0]) / 2 - outer.left, (after[0][1] + after[1][1]) / 2 - outer.top];
      if (spread(before) > 0) zoomAt((view.scale * spread(after)) / spread(before), mid[0], mid[1]);
    }
  });
  const release = (event) => pointers.delete(event.pointerId);
  body.addEventListener("pointerup", release);
  body.addEventListener("pointercancel", release);

  function shownImage() {
    const content = body.querySelector(".lightbox-content");
    const img = body.querySelector(".lightbox-image img");
    return content && img ? { id: content.dataset.imageId, src: img.getAttribute("src"), prompt: img.alt } : null;
  }

  function togglePin() {
    const image = shownImage();
    pinned = pinned || !image ? null : image;
    renderPinned();
  }

  function renderPinned() {
    const comparing = pinned !== null;
    dialog.classList.toggle("comparing", comparing);
    pinnedPane.hidden = !comparing;
    const pin = body.querySelector("[data-lightbox=pin]");
    if (pin) {
      pin.setAttribute("aria-pressed", String(comparing));
      pin.textContent = comparing ? "Stop comparing" : "Compare";
    }
    // Stepping to the next image keeps the pinned one as it is (no reload, no flicker).
    if (comparing && pinnedPane.dataset.imageId === pinned.id) return;
    pinnedPane.replaceChildren();
    pinnedPane.dataset.imageId = comparing ? pinned.id : "";
    if (!comparing) return;
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = pinned.src;
    img.alt = "Pinned: " + pinned.prompt;
    const caption = document.createElement("figcaption");
    caption.textContent = "Pinned · " + pinned.prompt;
    figure.append(img, caption);
    pinnedPane.append(figure);
  }

  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) return dialog.close(); // the backdrop
    const relative = event.target.closest(".lineage-link");
    if (relative && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      return show(relative, true);
    }
    const control = event.target.closest("[data-lightbox]");
    if (control) {
      const action = control.dataset.lightbox;
      if (action === "close") dialog.close();
      else if (action === "zoom") toggleZoom();
      else if (action === "pin") togglePin();
      else step(action === "next" ? 1 : -1);
    } else if (event.target.closest(".lightbox-image img") && !moved) toggleZoom(...framePoint(event));
  });
  // Whichever request swaps in last (keys pressed quickly), focus stays in the viewer.
  body.addEventListener("htmx:afterSettle", () => {
    body.removeAttribute("aria-busy");
    const first = body.querySelector(".lightbox-actions a, .lightbox-actions button");
    if (first && !dialog.contains(document.activeElement)) first.focus({ preventScroll: true });
    renderPinned();
  });
  document.addEventListener("keydown", (event) => {
    if (!dialog.open) return;
    if (event.target.matches("input, textarea, select") || event.metaKey || event.ctrlKey || event.altKey) return;
    if (event.key === "ArrowRight") step(1);
    else if (event.key === "ArrowLeft") step(-1);
    else if (event.key === "z" || event.key === "Z") toggleZoom();
    else if (event.key === "c" || event.key === "C") togglePin();
    else return;
    event.preventDefault();
  });
  dialog.addEventListener("close", () => {
    document.body.classList.remove("lightbox-open");
    body.replaceChildren();
    pinned = null;
    renderPinned();
    if (opener && document.contains(opener)) opener.focus();
  });

  // An image deleted from the viewer: show the next one, or close when none is left. (This runs
  // before the page's own listener takes the deleted element away.)
  document.body.addEventListener("imageDeleted", (event) => {
    if (pinned && pinned.id === event.detail.id) {
      pinned = null;
      renderPinned();
    }
    if (!dialog.open) return;
    const all = items();
    const index = all.indexOf(current);
    const rest = all.filter((element) => element.dataset.imageId !== event.detail.id);
    const next = rest[Math.min(Math.max(index, 0), rest.length - 1)];
    if (next) {
      opener = next;
      show(next);
    } else dialog.close();
  });

  // --- the chat: its images open here, stepping through the conversation's images --------------
  const thread = document.getElementById("thread");
  if (thread) {
    const chatImages = () =>
      Array.from(thread.querySelectorAll(".result[data-image-id]")).map((figure) => {
        figure.dataset.viewerUrl = "/gallery/" + figure.dataset.imageId;
        return figure;
      });
    thread.addEventListener("click", (event) => {
      const link = event.target.closest(".result-open");
      if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      const figure = link.closest(".result[data-image-id]");
      chatImages();
      open(figure, { items: chatImages, opener: link });
    });
    document.body.addEventListener("imageDeleted", (event) => {
      const figure = thread.querySelector('.result[data-image-id="' + event.detail.id + '"]');
      if (figure) figure.remove();
    });
    // "Continue editing" from the gallery: a new chat with that image as its reference (the chat's
    // own "Use as reference" does the rest).
    const params = new URLSearchParams(location.search);
    const reference = params.get("reference");
    if (reference && /^[0-9a-f-]{36}$/.test(reference)) {
      const use = document.createElement("button");
      use.type = "button";
      use.hidden = true;
      use.dataset.useReference = reference;
      use.dataset.thumbnail = "/files/" + reference + "/thumbnail";
      document.body.append(use);
      use.click();
      use.remove();
    }
  }

  return { open, step, get isOpen() { return dialog.open; } };
})();
