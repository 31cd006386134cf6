// The chat page: the prompt box (choices in popovers, edit or new image, the length, reference
// images, keyboard), live progress of a pending turn, image actions, following the thread's end.
(function () {
  "use strict";

  const form = document.getElementById("composer");
  if (!form) return;
  const prompt = document.getElementById("prompt");
  const thinkingPicker = document.getElementById("thinking-picker");
  const groundingBox = document.getElementById("grounding");
  const batchBox = document.getElementById("batch");
  const modeField = document.getElementById("mode");
  const counter = document.getElementById("prompt-count");
  const pickerNote = document.getElementById("picker-note");
  const fileInput = document.getElementById("images");
  const preview = document.getElementById("ref-preview");
  const errorBox = document.getElementById("composer-error");
  const thread = document.getElementById("thread");
  const models = JSON.parse(document.getElementById("model-choices").textContent);
  const maxImages = Number(form.dataset.maxImages);
  const maxBytes = Number(form.dataset.maxMb) * 1024 * 1024;
  const maxPrompt = Number(form.dataset.maxPrompt);
  const accepted = ["image/png", "image/jpeg", "image/webp"];
  const number = new Intl.NumberFormat("en");

  // --- choices: radios in the chips' popovers, only what the chosen model supports -------------
  function chosen(name) {
    const input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : "";
  }

  function choose(name, value) {
    const input = Array.from(form.querySelectorAll('input[name="' + name + '"]')).find((i) => i.value === value);
    if (input) input.checked = true;
  }

  // A group of radios: the blank choice (the model's default) first, then the model's values.
  function fill(fieldset, name, values, blankLabel, wanted) {
    const keep = wanted !== undefined ? wanted : chosen(name);
    fieldset.querySelectorAll("label").forEach((label) => label.remove());
    for (const [value, text] of [["", blankLabel], ...values.map((v) => [v, v])]) {
      const label = document.createElement("label");
      label.className = "option";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = name;
      input.value = value;
      label.append(input);
      if (name === "aspect_ratio" && value) {
        const shape = document.createElement("span"); // the ratio drawn, beside its name
        shape.className = "shape";
        shape.setAttribute("aria-hidden", "true");
        shape.style.aspectRatio = value.replace(":", " / ");
        label.append(shape);
      }
      label.append(" " + text);
      fieldset.append(label);
    }
    choose(name, values.includes(keep) ? keep : "");
  }

  function currentModel() {
    return models.find((m) => m.id === chosen("model")) || models[0];
  }

  function syncPickers(wanted) {
    const model = currentModel();
    fill(document.getElementById("ratio-picker"), "aspect_ratio", model.aspect_ratios, "Auto", wanted && wanted.aspectRatio);
    fill(document.getElementById("resolution-picker"), "resolution", model.resolutions, "Default", wanted && wanted.resolution);
    // Thinking levels and Google Search grounding only where the model offers them.
    fill(thinkingPicker, "thinking_level", model.thinking_levels, "Default", wanted && wanted.thinkingLevel);
    thinkingPicker.hidden = model.thinking_levels.length === 0;
    groundingBox.closest("label").hidden = !model.grounding;
    if (!model.grounding) groundingBox.checked = false;
    summarize();
  }

  // The chips say what is chosen; `choices` is what they said, for a model switch to compare with.
  let choices = {};
  function summarize() {
    // "Nano Banana" is every model's family name: on a phone the chip shows what tells them apart.
    const [, familyName, name] = currentModel().label.match(/^(Nano Banana )?(.*)$/);
    const family = document.createElement("span");
    family.className = "model-family";
    family.textContent = familyName || "";
    const thinking = chosen("thinking_level");
    document.getElementById("model-summary").replaceChildren(
      family, name + (thinking ? " · " + thinking + " thinking" : "") + (groundingBox.checked ? " · Search" : "")
    );
    const count = Number(chosen("num_images") || 1);
    const parts = [
      chosen("aspect_ratio") || "Auto ratio", chosen("resolution"), count > 1 ? "×" + count : "", batchBox.checked ? "½ price" : "",
    ];
    document.getElementById("format-summary").textContent = parts.filter(Boolean).join(" · ");
    choices = {
      aspectRatio: chosen("aspect_ratio"),
      resolution: chosen("resolution"),
      thinkingLevel: chosen("thinking_level"),
      grounding: groundingBox.checked,
    };
  }

  function note(message) {
    pickerNote.textContent = message;
    pickerNote.hidden = !message;
  }

  // A model that lacks the chosen ratio, size, thinking level or Search resets them: say so.
  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (name === "model") {
      const was = choices;
      syncPickers(was);
      const lost = [
        [was.aspectRatio, choices.aspectRatio, "aspect ratio "],
        [was.resolution, choices.resolution, "size "],
        [was.thinkingLevel, choices.thinkingLevel, "thinking level "],
      ].filter(([then, now]) => then && now !== then).map(([then, , what]) => what + then);
      if (was.grounding && !groundingBox.checked) lost.push("Google Search");
      note(lost.length ? currentModel().label + " has no " + lost.join(", ") + ": reset to the default." : "");
    } else if (name === "mode") {
      placeholder();
    } else if (["aspect_ratio", "resolution", "thinking_level", "num_images", "grounding", "batch"].includes(name)) {
      summarize();
    }
  });
  summarize(); // the server drew the choices of the model it chose

  // An open popover sits above its chip (CSS anchor positioning) and starts on the checked choice.
  form.querySelectorAll("[popover]").forEach((pop) =>
    pop.addEventListener("toggle", (event) => {
      if (event.newState !== "open") return;
      const checked = pop.querySelector("input:checked") || pop.querySelector("input");
      if (checked) checked.focus();
    })
  );

  // --- edit the last image, or make a new one -----------------------------------------------------
  function placeholder() {
    if (modeField.hidden) prompt.placeholder = "Describe an image…";
    else prompt.placeholder = chosen("mode") === "new" ? "Describe a new image…" : "Describe a change to the last image…";
  }

  // Once a turn brings an image, the next prompt can edit it: the choice shows, with that image.
  function offerEditing() {
    const answers = thread.querySelectorAll('.msg-model[data-state="succeeded"]');
    const thumbs = answers.length ? answers[answers.length - 1].querySelectorAll(".result [data-thumbnail]") : [];
    if (!thumbs.length) return;
    document.getElementById("mode-thumb").src = thumbs[thumbs.length - 1].dataset.thumbnail;
    if (modeField.hidden) {
      modeField.hidden = false;
      choose("mode", "edit");
      placeholder();
    }
  }

  // --- the prompt box ----------------------------------------------------------------------
  function autosize() {
    prompt.style.height = "auto";
    prompt.style.height = Math.min(prompt.scrollHeight + 2, 240) + "px";
  }

  // Counted as the server counts (characters, not UTF-16 units, around the spaces it strips).
  function promptLength() {
    return Array.from(prompt.value.trim()).length;
  }

  function countPrompt() {
    const length = promptLength();
    const over = length > maxPrompt;
    counter.hidden = length < maxPrompt * 0.8;
    counter.textContent = number.format(length) + " / " + number.format(maxPrompt);
    counter.classList.toggle("over", over);
    if (over) prompt.setAttribute("aria-invalid", "true");
    else prompt.removeAttribute("aria-invalid");
    return over;
  }

  function tooLong() {
    const length = promptLength();
    return "The prompt has " + number.format(length) + " characters; the limit is " + number.format(maxPrompt) +
      ". Shorten it by " + number.format(length - maxPrompt) + ".";
  }

  prompt.addEventListener("input", () => {
    autosize();
    countPrompt();
  });
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

  // Whether the browser can decode the file: a damaged image is refused now, not after sending.
  async function readable(file) {
    try {
      (await createImageBitmap(file)).close();
      return true;
    } catch (error) {
      return false;
    }
  }

  async function addFiles(files) {
    showError("");
    const refused = [];
    for (const file of files) {
      if (!accepted.includes(file.type)) {
        refused.push(file.name + " is not a PNG, JPEG or WEBP image.");
      } else if (file.size > maxBytes) {
        refused.push(file.name + " is larger than " + form.dataset.maxMb + " MB.");
      } else if (!(await readable(file))) {
        refused.push(file.name + " can't be opened as an image: the file is damaged or incomplete.");
      } else if (uploads.length + galleryRefs.length >= maxImages) {
        refused.push("At most " + maxImages + " reference images per prompt.");
        break;
      } else {
        uploads.push(file);
      }
    }
    syncFileInput();
    renderPreview();
    showError(refused.join(" "));
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
    syncFileInput(); // the input holds what was accepted, not what was just picked
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
  form.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt !== form) return;
    if (countPrompt()) {
      event.preventDefault(); // the server would refuse it too: say so before sending
      showError(tooLong());
      return;
    }
    showError("");
  });
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
    countPrompt();
    uploads = [];
    galleryRefs = [];
    syncFileInput();
    renderPreview();
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

  // --- following the thread's end ------------------------------------------------------------
  // While the reader is at the end of the thread, keep it there as answers grow (a finished turn
  // swapping in, its image loading); someone scrolled up to read stays where they are. Images fit
  // the pane (app.css), so the end shows the last image whole, down to its footer.
  let atEnd = true;
  function scrollToEnd() {
    thread.scrollTop = thread.scrollHeight;
    atEnd = true;
  }
  thread.addEventListener("scroll", () => {
    atEnd = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 160;
  }, { passive: true });
  function followEnd() {
    if (atEnd) thread.scrollTop = thread.scrollHeight;
  }
  // A retry appends a new turn too.
  thread.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target === thread) scrollToEnd();
  });
  document.body.addEventListener("htmx:afterSettle", () => {
    offerEditing();
    followEnd();
  });
  thread.addEventListener("load", (event) => {
    if (event.target.tagName === "IMG") followEnd();
  }, true);

  // --- live progress: a running clock, and a bar that moves between the server's steps -----------
  // The server says the phase and its progress when something happens (one image made, saving);
  // in between, the bar eases towards the next step and the clock counts, so a long call of one
  // image is seen to be alive. Never backwards: a turn's bar keeps the furthest it has shown.
  const furthest = new Map();
  const EASE_SECONDS = 8;
  function tick() {
    const now = performance.now();
    thread.querySelectorAll(".pending").forEach((pending) => {
      const clock = pending.querySelector(".elapsed");
      const bar = pending.querySelector("progress");
      if (!clock || !bar) return;
      if (!clock.dataset.shownAt) clock.dataset.shownAt = String(now);
      const here = (now - Number(clock.dataset.shownAt)) / 1000;
      const seconds = Math.floor(Number(clock.dataset.elapsed) + here);
      clock.textContent = seconds < 60 ? seconds + " s" : Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
      const from = Number(bar.dataset.progress);
      const next = bar.dataset.phase === "generating" ? from + 80 / Number(bar.dataset.images) : from + 4;
      const value = Math.max(furthest.get(bar.id) || 0, from + (Math.min(next, 99) - from) * (1 - Math.exp(-here / EASE_SECONDS)));
      furthest.set(bar.id, value);
      bar.value = value;
    });
  }
  setInterval(tick, 500);
  document.body.addEventListener("htmx:afterSettle", tick);

  // --- image actions -------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.useReference) {
      addGalleryRef(target.dataset.useReference, target.dataset.thumbnail);
      prompt.focus();
    } else if (target.dataset.reuseSettings !== undefined || target.dataset.rephrase !== undefined) {
      // Reuse settings, or Rephrase a refused prompt: the prompt and its settings back in the box.
      choose("model", target.dataset.model);
      if (target.dataset.count) choose("num_images", target.dataset.count);
      syncPickers({ aspectRatio: target.dataset.aspectRatio, resolution: target.dataset.resolution });
      note("");
      if (target.dataset.references) {
        JSON.parse(target.dataset.references).forEach((ref) => addGalleryRef(ref.id, ref.thumbnail));
      }
      prompt.value = target.dataset.prompt;
      autosize();
      countPrompt();
      prompt.focus();
    } else return;
    // Taken from a ••• menu, the action closes it: the prompt box has the focus now.
    const menu = target.closest(".result-menu:popover-open");
    if (menu) menu.hidePopover();
  });

  autosize();
  countPrompt();
  placeholder();
  tick();
  thread.scrollTop = thread.scrollHeight;
  if (!prompt.value) prompt.focus();
})();
