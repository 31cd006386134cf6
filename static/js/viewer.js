// The image viewer, shared by the gallery and the chat: open an image, step through the others of
// the page with ←/→, zoom (Z, or click the image), compare two side by side (C pins the one shown;
// step to another), Esc closes. Pages open it with NanoViewer.open(link, {items, onEnd}); in the
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

  function setZoom(on) {
    dialog.classList.toggle("zoomed", on);
    if (zoomButton) zoomButton.setAttribute("aria-pressed", String(on));
  }

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
    pinnedPane.replaceChildren();
    const pin = body.querySelector("[data-lightbox=pin]");
    if (pin) {
      pin.setAttribute("aria-pressed", String(comparing));
      pin.textContent = comparing ? "Stop comparing" : "Compare";
    }
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
      else if (action === "zoom") setZoom(!dialog.classList.contains("zoomed"));
      else if (action === "pin") togglePin();
      else step(action === "next" ? 1 : -1);
    } else if (event.target.closest(".lightbox-image img")) setZoom(!dialog.classList.contains("zoomed"));
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
    else if (event.key === "z" || event.key === "Z") setZoom(!dialog.classList.contains("zoomed"));
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
