// Small behaviours the CSP allows (no inline scripts anywhere).
// Keep the CSRF token fresh for htmx requests after a boosted navigation replaces <body>.
document.addEventListener("htmx:configRequest", function (event) {
  var field = document.querySelector("input[name=csrf_token]");
  if (field && !event.detail.headers["X-CSRFToken"]) {
    event.detail.headers["X-CSRFToken"] = field.value;
  }
});

// Elements with data-confirm ask once before their request goes out: htmx asks for the
// requests it makes (hx-post, boosted forms), the submit listener for plain forms.
function handledByHtmx(form) {
  if (!window.htmx) { return false; }
  if (form.hasAttribute("hx-post") || form.hasAttribute("hx-get")) { return true; }
  var boosted = form.closest("[hx-boost]");
  return !!boosted && boosted.getAttribute("hx-boost") === "true";
}
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
  if (question && !handledByHtmx(form) && !window.confirm(question)) { event.preventDefault(); }
}, true);
