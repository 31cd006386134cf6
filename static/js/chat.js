// The chat page: the prompt box (pickers, reference images, keyboard), image actions, the sidebar on phones.
(function () {
  "use strict";

  const form = document.getElementById("composer");
  if (!form) return;
  const prompt = document.getElementById("prompt");
  const modelSelect = document.getElementById("model");
  const ratioSelect = document.getElementById("aspect-ratio");
  const resolutionSelect = document.getElementById("resolution");
  const thinkingSelect = document.getElementById("thinking-level");
  const groundingBox = document.getElementById("grounding");
  const countSelect = document.getElementById("num-images");
  const pickerNote = document.getElementById("picker-note");
  const fileInput = document.getElementById("images");
  const preview = document.getElementById("ref-preview");
  const errorBox = document.getElementById("composer-error");
  const thread = document.getElementById("thread");
  const models = JSON.parse(document.getElementById("model-choices").textContent);
  const maxImages = Number(form.dataset.maxImages);
  const maxBytes = Number(form.dataset.maxMb) * 1024 * 1024;
  const accepted = ["image/png", "image/jpeg", "image/webp"];

  // --- pickers: only what the chosen model supports -----------------------------------------
  function fill(select, values, blankLabel, wanted) {
    const keep = wanted !== undefined ? wanted : select.value;
    select.replaceChildren(new Option(blankLabel, ""));
    for (const value of values) select.add(new Option(value, value));
    select.value = values.includes(keep) ? keep : "";
  }

  function currentModel() {
    return models.find((m) => m.id === modelSelect.value) || models[0];
  }

  function syncPickers(wanted) {
    const model = currentModel();
    fill(ratioSelect, model.aspect_ratios, "Auto ratio", wanted && wanted.aspectRatio);
    fill(resolutionSelect, model.resolutions, "Default size", wanted && wanted.resolution);
    // Thinking levels and Google Search grounding only where the model offers them.
    fill(thinkingSelect, model.thinking_levels, "Default thinking", wanted && wanted.thinkingLevel);
    thinkingSelect.closest("label").hidden = model.thinking_levels.length === 0;
    groundingBox.closest("label").hidden = !model.grounding;
    if (!model.grounding) groundingBox.checked = false;
  }

  function note(message) {
    pickerNote.textContent = message;
    pickerNote.hidden = !message;
  }

  // A model that lacks the chosen ratio, size, thinking level or Search resets them: say so.
  modelSelect.addEventListener("change", () => {
    const before = [
      [ratioSelect, "aspect ratio " + ratioSelect.value],
      [resolutionSelect, "size " + resolutionSelect.value],
      [thinkingSelect, "thinking level " + thinkingSelect.value],
    ].filter(([select]) => select.value);
    const searched = groundingBox.checked;
    const values = before.map(([select]) => select.value);
    syncPickers();
    const lost = before.filter(([select], index) => select.value !== values[index]).map(([, what]) => what);
    if (searched && !groundingBox.checked) lost.push("Google Search");
    note(lost.length ? currentModel().label + " has no " + lost.join(", ") + ": reset to the default." : "");
  });
  syncPickers({
    aspectRatio: ratioSelect.dataset.selected,
    resolution: resolutionSelect.dataset.selected,
    thinkingLevel: thinkingSelect.dataset.selected,
  });

  // --- the prompt box ----------------------------------------------------------------------
  function autosize() {
    prompt.style.height = "auto";
    prompt.style.height = Math.min(prompt.scrollHeight, 240) + "px";
  }
  prompt.addEventListener("input", autosize);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (prompt.value.trim()) form.requestSubmit();
    }
  });

  function showError(message) {
    errorBox.replaceChildren();
    if (!message) return;
    const p = document.createElement("p");
    p.className = "form-error";
    p.textContent = "⚠ " + message;
    errorBox.append(p);
  }

  // --- reference images: uploads (pick, drop, paste) and gallery images ("use as reference") --
  let uploads = []; // File objects
  let galleryRefs = []; // {id, thumbnail}

  function syncFileInput() {
    const transfer = new DataTransfer();
    uploads.forEach((file) => transfer.items.add(file));
    fileInput.files = transfer.files;
  }

  function removeButton(label, onRemove) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ref-remove";
    button.setAttribute("aria-label", "Remove " + label);
    button.textContent = "✕";
    button.addEventListener("click", onRemove);
    return button;
  }

  function renderPreview() {
    preview.replaceChildren();
    uploads.forEach((file, index) => {
      const item = document.createElement("li");
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = "Reference: " + file.name;
      img.onload = () => URL.revokeObjectURL(img.src);
      item.append(img, removeButton(file.name, () => {
        uploads.splice(index, 1);
        syncFileInput();
        renderPreview();
      }));
      preview.append(item);
    });
    galleryRefs.forEach((ref, index) => {
      const item = document.createElement("li");
      const img = document.createElement("img");
      img.src = ref.thumbnail;
      img.alt = "Reference: an earlier image";
      const hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "reference_image_ids";
      hidden.value = ref.id;
      item.append(img, hidden, removeButton("earlier image", () => {
        galleryRefs.splice(index, 1);
        renderPreview();
      }));
      preview.append(item);
    });
    preview.hidden = uploads.length + galleryRefs.length === 0;
  }

  function addFiles(files) {
    showError("");
    for (const file of files) {
      if (!accepted.includes(file.type)) {
        showError(file.name + " is not a PNG, JPEG or WEBP image.");
        continue;
      }
      if (file.size > maxBytes) {
        showError(file.name + " is larger than " + form.dataset.maxMb + " MB.");
        continue;
      }
      if (uploads.length + galleryRefs.length >= maxImages) {
        showError("At most " + maxImages + " reference images per prompt.");
        break;
      }
      uploads.push(file);
    }
    syncFileInput();
    renderPreview();
  }

  function addGalleryRef(id, thumbnail) {
    showError("");
    if (galleryRefs.some((ref) => ref.id === id)) return;
    if (uploads.length + galleryRefs.length >= maxImages) {
      showError("At most " + maxImages + " reference images per prompt.");
      return;
    }
    galleryRefs.push({ id, thumbnail });
    renderPreview();
  }

  fileInput.addEventListener("change", () => {
    const picked = Array.from(fileInput.files);
    addFiles(picked);
  });

  ["dragenter", "dragover"].forEach((type) =>
    form.addEventListener(type, (event) => {
      if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
      event.preventDefault();
      form.classList.add("dragging");
    })
  );
  ["dragleave", "drop"].forEach((type) =>
    form.addEventListener(type, (event) => {
      if (type === "dragleave" && form.contains(event.relatedTarget)) return;
      form.classList.remove("dragging");
    })
  );
  form.addEventListener("drop", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    addFiles(Array.from(event.dataTransfer.files));
  });
  document.addEventListener("paste", (event) => {
    const files = Array.from((event.clipboardData && event.clipboardData.files) || []).filter((f) =>
      f.type.startsWith("image/")
    );
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  renderPreview();

  // --- sending -------------------------------------------------------------------------------
  function scrollToEnd() {
    thread.scrollTop = thread.scrollHeight;
    atEnd = true;
  }

  form.addEventListener("htmx:beforeRequest", () => showError(""));
  form.addEventListener("htmx:afterRequest", (event) => {
    if (event.detail.elt !== form) return;
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 0 || status >= 500) {
      showError("Could not reach NanoClone. Check your connection and try again.");
    }
    // A refused send (422 and the like, shown in the error box) keeps everything typed and attached.
    if (status < 200 || status >= 300) return;
    note("");
    prompt.value = "";
    autosize();
    uploads = [];
    galleryRefs = [];
    syncFileInput();
    renderPreview();
    prompt.placeholder = "Describe a change to the last image…";
    scrollToEnd();
  });
  // A pending answer waits on the server for news (long polling); after a dropped connection or a
  // server error it asks again a little later rather than showing a stale turn for ever.
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const answer = event.detail.elt;
    if (!answer.matches || !answer.matches(".msg-model[hx-get]")) return;
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 0 || status >= 500) {
      setTimeout(() => answer.isConnected && htmx.trigger(answer, "poll-again"), 2000);
    }
  });
  // A retry appends a new turn too.
  thread.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target === thread) scrollToEnd();
  });
  // While the reader is at the end of the thread, keep it there as answers grow (a finished
  // turn swapping in, its image loading); someone scrolled up to read stays where they are.
  let atEnd = true;
  thread.addEventListener("scroll", () => {
    atEnd = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 160;
  }, { passive: true });
  function followEnd() {
    if (atEnd) thread.scrollTop = thread.scrollHeight;
  }
  document.body.addEventListener("htmx:afterSettle", followEnd);
  thread.addEventListener("load", (event) => {
    if (event.target.tagName === "IMG") followEnd();
  }, true);

  // --- image actions -------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.useReference) {
      addGalleryRef(target.dataset.useReference, target.dataset.thumbnail);
      prompt.focus();
    } else if (target.dataset.reuseSettings !== undefined || target.dataset.rephrase !== undefined) {
      // Reuse settings, or Rephrase a refused prompt: the prompt and its settings back in the box.
      modelSelect.value = target.dataset.model;
      syncPickers({ aspectRatio: target.dataset.aspectRatio, resolution: target.dataset.resolution });
      if (target.dataset.count) countSelect.value = target.dataset.count;
      note("");
      if (target.dataset.references) {
        JSON.parse(target.dataset.references).forEach((ref) => addGalleryRef(ref.id, ref.thumbnail));
      }
      prompt.value = target.dataset.prompt;
      autosize();
      prompt.focus();
    }
  });

  autosize();
  thread.scrollTop = thread.scrollHeight;
  if (!prompt.value) prompt.focus();
})();
