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
