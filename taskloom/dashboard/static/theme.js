// Applies the saved theme before the page paints (loaded in <head>, no inline script).
(function () {
  "use strict";
  try {
    var saved = localStorage.getItem("taskloom-theme");
    if (saved === "dark" || saved === "light") {
      document.documentElement.setAttribute("data-theme", saved);
    }
  } catch (e) { /* storage may be disabled */ }
})();
