(function () {
  var m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, "", location.pathname + location.search);
  var f = document.createElement("form");
  f.method = "post";
  f.action = "/signin" + location.search;
  var i = document.createElement("input");
  i.type = "hidden";
  i.name = "token";
  i.value = decodeURIComponent(m[1]);
  f.appendChild(i);
  document.body.appendChild(f);
  f.submit();
})();
