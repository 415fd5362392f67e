/* The debtor's filing form: the proof files' number, size and type are checked before anything is sent, and the
 * fault is shown beside the field (the server checks them again, by their content, and says so the same way). The
 * form is sent once by app.js (data-send-once), which leaves alone a sending refused here. No inline script (CSP). */
(function () {
  "use strict";

  var TYPES = /\.(pdf|jpe?g|png)$/i;

  function problem(input) {
    var files = input.files || [];
    var maxFiles = Number(input.getAttribute("data-max-files"));
    var maxBytes = Number(input.getAttribute("data-max-bytes"));
    if (files.length > maxFiles) {
      return input.getAttribute("data-too-many").replace("{n}", String(files.length));
    }
    for (var i = 0; i < files.length; i++) {
      if (files[i].size > maxBytes) {
        return input.getAttribute("data-too-large").replace("{name}", files[i].name);
      }
      if (!TYPES.test(files[i].name)) {
        return input.getAttribute("data-wrong-type").replace("{name}", files[i].name);
      }
    }
    return "";
  }

  function show(input) {
    var text = problem(input);
    var error = document.getElementById("files-error");
    input.setCustomValidity(text);
    if (text) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
    if (error) {
      error.textContent = text;
      error.hidden = !text;
    }
    return text;
  }

  function setUp() {
    var form = document.getElementById("file-form");
    var input = document.getElementById("files");
    if (!form || !input) { return; }
    input.addEventListener("change", function () { show(input); });
    form.addEventListener("submit", function (event) {
      if (show(input)) {
        event.preventDefault();
        input.focus();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", setUp);
})();
