// Small behaviours the pages share; kept out of the HTML so that the CSP can forbid inline script.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// A polled fragment whose session has ended comes back as the sign-in page (after the
// redirect): go there, rather than drawing the sign-in form inside the fragment.
document.addEventListener("htmx:beforeSwap", (event) => {
  const url = new URL(event.detail.xhr.responseURL || window.location.href);
  if (url.pathname === "/login/" && window.location.pathname !== "/login/") {
    event.detail.shouldSwap = false;
    window.location.assign(url.href);
  }
});

// The browser's time zone, so that the portal shows times in it (unless the person chose
// another in My account): read by accounts.middleware.TimeZoneMiddleware.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const cookie = "tz=" + zone;  // IANA names need no escaping in a cookie
  if (zone && !document.cookie.split("; ").includes(cookie)) {
    document.cookie = cookie + "; path=/; max-age=31536000; SameSite=Lax";
  }
})();

// On a phone a table's rows stack (portal.css): each cell is named by its column here.
function labelCells(root) {
  root.querySelectorAll("table.table").forEach((table) => {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((row) => {
      [...row.children].forEach((cell, i) => {
        if (heads[i] && !cell.dataset.label) cell.dataset.label = heads[i];
      });
    });
  });
}
document.addEventListener("DOMContentLoaded", () => labelCells(document));
document.addEventListener("htmx:afterSwap", (event) => labelCells(event.target));

// A table wider than its box scrolls sideways: keyboard users reach it too.
function focusableScrolling(root) {
  root.querySelectorAll(".table-wrap").forEach((wrap) => {
    if (wrap.scrollWidth > wrap.clientWidth && !wrap.hasAttribute("tabindex")) {
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Table (scrolls sideways)");
    }
  });
}
window.addEventListener("load", () => focusableScrolling(document));

// "Tick everyone on this page": a header box ticks the rows' boxes of its name.
document.addEventListener("change", (event) => {
  const name = event.target.dataset && event.target.dataset.selectAll;
  if (!name) return;
  event.target.form.querySelectorAll(`input[name="${name}"]`).forEach((box) => {
    box.checked = event.target.checked;
  });
});
