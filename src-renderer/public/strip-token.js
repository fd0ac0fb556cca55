// The browser host's first load brings the launch token in the address (?token=…); the server has set it as a
// cookie with this page. This classic script runs before the app's modules and takes the token out of the
// address bar and the history entry, keeping the rest (the view in the hash) as it was.
(function () {
  var url = new URL(window.location.href);
  if (!url.searchParams.has('token')) return;
  url.searchParams.delete('token');
  window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
})();
