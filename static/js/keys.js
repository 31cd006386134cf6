// The keys page: confirm destructive actions before the form posts; the chart starts at today.
(function () {
  "use strict";
  // On a phone the chart is wider than the screen: show its right end, where today's bar is.
  const chart = document.querySelector(".chart-wrap");
  if (chart) chart.scrollLeft = chart.scrollWidth;
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
