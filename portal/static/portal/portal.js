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

// A picker with more candidates than a page carries (kernel.forms.SuggestingInput) asks
// its address for those matching what is typed, from 2 characters, once the typing
// pauses, and fills its list with them. Without this script what is typed still goes
// to the form, which looks it up as ever.
const SUGGEST_AFTER_MS = 250;
const SUGGEST_FROM_CHARACTERS = 2;
document.addEventListener("input", (event) => {
  const field = event.target;
  const source = field.dataset && field.dataset.suggestions;
  if (!source || !field.list) return;
  const typed = field.value.trim();
  clearTimeout(field.suggesting);
  // A suggestion just taken, or too little typed: keep the list as it is.
  if (typed.length < SUGGEST_FROM_CHARACTERS) return;
  if ([...field.list.options].some((option) => option.value === field.value)) return;
  field.suggesting = setTimeout(async () => {
    if (field.asking) field.asking.abort();  // an answer to older typing would only flicker
    field.asking = new AbortController();
    const url = new URL(source, window.location.href);
    url.searchParams.set("q", typed);
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        signal: field.asking.signal,
      });
      if (!response.ok) return;
      const { suggestions } = await response.json();
      if (field.value.trim() !== typed) return;
      field.list.replaceChildren(
        ...suggestions.map(({ value, label }) => new Option(label, value)),
      );
    } catch {
      // Aborted, offline or signed out: the form still checks whatever is typed.
    }
  }, SUGGEST_AFTER_MS);
});
