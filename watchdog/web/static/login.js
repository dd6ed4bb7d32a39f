// The view the owner was on (an editor, the incidents) is kept across the login: the form is
// sent to /login with it, and the answer's redirect to / keeps it (a redirect without a
// fragment of its own keeps the request's).
const form = document.querySelector("form.login-card");
if (form && /^#\/[A-Za-z0-9_\/-]*$/.test(location.hash)) form.action = "/login" + location.hash;
// sent here by the dashboard when the login ran out: said, not a page that just appeared
const expired = document.getElementById("login-expired");
if (expired && /(^\?|&)expired(&|=|$)/.test(location.search) && !document.getElementById("login-error")) {
  expired.hidden = false;
}
