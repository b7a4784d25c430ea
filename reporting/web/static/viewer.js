// Image previews rendered by the server from the DICOM: view switch, window/level presets and
// drag, zoom. Every window change asks /api/instances/{uid}/preview.png for a new rendering.
"use strict";

const viewer = (() => {
  const image = document.getElementById("image");
  const frame = document.getElementById("image-frame");
  if (!image || !frame) return { ready: Promise.resolve(false) };
  const buttons = [...document.querySelectorAll(".view-button")];
  const preset = document.getElementById("window-preset");
  const readout = document.getElementById("window-readout");
  const defaults = new Map();
  const PRESETS = {
    default: (w) => w,
    wide: (w) => ({ center: w.center, width: w.width * 1.6 }),
    narrow: (w) => ({ center: w.center, width: w.width * 0.6 }),
    bright: (w) => ({ center: w.center + w.width * 0.15, width: w.width }),
  };
  let uid = buttons.length ? buttons[0].dataset.uid : null;
  let windowing = null;
  let zoom = 1;
  let pending = null;
  let resolveReady;
  const ready = new Promise((resolve) => { resolveReady = resolve; });

  function render() {
    if (!uid || !windowing) return;
    const query = new URLSearchParams({
      size: "1024",
      center: windowing.center.toFixed(2),
      width: Math.max(windowing.width, 1).toFixed(2),
    });
    image.src = `/api/instances/${encodeURIComponent(uid)}/preview.png?${query}`;
    readout.textContent = `C ${Math.round(windowing.center)} / W ${Math.round(windowing.width)}`;
  }

  function renderSoon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; render(); }, 120);
  }

  async function show(nextUid) {
    uid = nextUid;
    for (const button of buttons) button.classList.toggle("active", button.dataset.uid === uid);
    if (!defaults.has(uid)) {
      try {
        defaults.set(uid, await radraft.api("GET", `/api/instances/${encodeURIComponent(uid)}/window`));
      } catch (failure) {
        readout.textContent = `cannot show this image: ${failure.message}`;
        image.removeAttribute("src");
        return;
      }
    }
    windowing = PRESETS[preset.value](defaults.get(uid));
    render();
  }

  image.addEventListener("load", () => resolveReady(true));
  image.addEventListener("error", () => resolveReady(false));
  for (const button of buttons) button.addEventListener("click", () => show(button.dataset.uid));
  preset.addEventListener("change", () => {
    windowing = PRESETS[preset.value](defaults.get(uid));
    render();
  });

  function setZoom(value) {
    zoom = Math.min(8, Math.max(0.25, value));
    image.style.transform = `scale(${zoom})`;
  }
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(zoom * 1.25));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(zoom / 1.25));
  document.getElementById("zoom-reset").addEventListener("click", () => setZoom(1));
  frame.addEventListener("wheel", (event) => {
    event.preventDefault();
    setZoom(zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1));
  }, { passive: false });

  // Drag: left/right changes the width (contrast), up/down the center (brightness).
  let drag = null;
  frame.addEventListener("pointerdown", (event) => {
    if (!windowing) return;
    drag = { x: event.clientX, y: event.clientY, start: { ...windowing } };
    frame.setPointerCapture(event.pointerId);
  });
  frame.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const unit = drag.start.width / 256;
    windowing = {
      center: drag.start.center - (event.clientY - drag.y) * unit,
      width: Math.max(1, drag.start.width + (event.clientX - drag.x) * unit),
    };
    renderSoon();
  });
  frame.addEventListener("pointerup", () => { drag = null; render(); });

  if (uid) show(uid); else resolveReady(false);
  return { ready, current: () => ({ uid, windowing, zoom }) };
})();
