// The keys page: confirm destructive actions before the form posts.
(function () {
  "use strict";
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
