// The keys page: the chart starts at today (base.html's app.js confirms the destructive forms).
(function () {
  "use strict";
  // On a phone the chart is wider than the screen: show its right end, where today's bar is.
  const chart = document.querySelector(".chart-wrap");
  if (chart) chart.scrollLeft = chart.scrollWidth;
})();
