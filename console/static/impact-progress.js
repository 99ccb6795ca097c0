// A running impact report's progress, kept up to date without a page refresh (a meta refresh fails
// WCAG 2.2.1: axe's meta-refresh rule). Without scripts the page's "Check progress" link does this.
const box = document.getElementById("run-progress");
const bar = document.getElementById("progress");
const text = document.getElementById("progress-text");

async function poll() {
  const reply = await fetch(box.dataset.progressUrl, {cache: "no-store", credentials: "same-origin"});
  if (!reply.ok) return;
  const run = await reply.json();
  if (run.status !== "running") {
    window.location.reload();  // the report (or why it failed) replaces the progress
    return;
  }
  bar.value = run.percent;
  bar.textContent = `${run.percent}%`;
  text.textContent = run.text;
  setTimeout(poll, 2000);
}

if (box) setTimeout(poll, 2000);
