// Emailed links (an invitation, a password reset) carry their secret after "#", which
// browsers never send to a server: it stays out of access logs and Referer headers.
// Post it, and clear it from the address bar and history.
(() => {
  const form = document.querySelector("[data-link-secret]");
  if (!form) return;
  const secret = window.location.hash.slice(1);
  window.history.replaceState(null, "", window.location.pathname);
  if (secret) {
    form.elements.secret.value = secret;
    form.submit();
  } else {
    document.querySelector("[data-link-secret-missing]").hidden = false;
  }
})();
