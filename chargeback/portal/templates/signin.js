(function () {
  // a link's #token= (never sent to a server): out of the address bar, posted to /signin
  function signIn() {
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
  }
  window.addEventListener("hashchange", signIn);  // a link pasted into this same tab
  signIn();
})();
