// Small behaviours the CSP allows (no inline scripts anywhere).
// Keep the CSRF token fresh for htmx requests after a boosted navigation replaces <body>.
document.addEventListener("htmx:configRequest", function (event) {
  var field = document.querySelector("input[name=csrf_token]");
  if (field && !event.detail.headers["X-CSRFToken"]) {
    event.detail.headers["X-CSRFToken"] = field.value;
  }
});
// Elements with data-confirm ask before their request goes out.
document.addEventListener("htmx:confirm", function (event) {
  var el = event.detail.elt;
  var question = el && el.getAttribute("data-confirm");
  if (question) {
    event.preventDefault();
    if (window.confirm(question)) { event.detail.issueRequest(true); }
  }
});
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !form.hasAttribute("hx-post") && !window.confirm(question)) { event.preventDefault(); }
}, true);
